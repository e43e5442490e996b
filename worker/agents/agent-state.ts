/**
 * Per-agent durable state, one object per agent id, and the agent's audit chain. `/token` makes one call
 * here ({@link AgentState.exchange}): the object admits the request (suspended? attestation or DPoP proof
 * replayed? task finished? rate limited?), commits what the worker decided (a grant, an approval opened or
 * collected, a refusal) and the decision's audit record, all in one storage transaction. Admins and token
 * holders change it (revoke, suspend, resume, finish a task, decide an approval), each change committed with
 * its record; introspection reads it.
 *
 * Every change is written to the object's storage before the call returns, so a revocation that has
 * answered survives the object being evicted or restarted, and so does the record of every decision.
 */
import { AuditOutbox, type Backlog } from '../audit/outbox';
import { auditTransport } from '../audit/queue-transport';
import { type AuditDraft, type AuditOutcome, agentChain, type ChainHead, decideRecord } from '../audit/record';
import { AuditSampler, type SampledKind } from '../audit/sampler';
import {
  type ApprovalRecord,
  type ApprovalTerms,
  type Approver,
  approvalStatus,
  type DecideOutcome,
  decideApproval,
  type PollOutcome,
  pollApproval,
} from '../core/approval';
import type { Admission, ExchangeCall, ExchangeRefusal, ExchangeResult, Grant, ProofReplay } from '../core/exchange';
import { exchangeRefusal } from '../core/exchange';
import { AlarmSchedule } from '../durable/alarm';
import { MeteredObject } from '../durable/meter';
import { migrate } from '../durable/sql-schema';
import type { RateLimit } from '../policy/bundle';
import { loadedPolicy } from '../policy/loaded';
import { deliverDue, NOTIFICATIONS_TABLE, queueNotification } from './notifications';

/**
 * Extra seconds a used attestation is remembered past `replayUntil`: the worker verified it before this
 * call, on a clock that may differ a little from this object's.
 */
const CLOCK_MARGIN_SECONDS = 60;
/** How long after a row expires it may still wait for the alarm that deletes it with the rows after it. */
const CLEANUP_SLACK_SECONDS = 60;
/** How long a finished task is remembered: its tokens are dead, and its id is not issued again. */
const FINISHED_TASK_RETENTION_SECONDS = 24 * 3600;
/** How long a decided or expired approval stays readable after its expiry. */
const APPROVAL_RETENTION_SECONDS = 24 * 3600;
/** A DPoP nonce is handed out for this long, and accepted for up to twice as long (RFC 9449 §8). */
const DPOP_NONCE_LIFETIME_SECONDS = 300;
/**
 * A revocation of every token also revokes, one by one, the tokens admitted this long before it: their
 * `iat` may fall in the revocation's own second (or, with clocks a little apart, the next), which
 * revoked-before alone cannot tell apart from a token asked for after the revocation answered.
 */
const RECENT_ADMISSIONS_MS = 5000;

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS seen_attestations (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
   CREATE INDEX IF NOT EXISTS seen_attestations_expiry ON seen_attestations (expires_at);
   CREATE TABLE IF NOT EXISTS revoked_tokens (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
   CREATE INDEX IF NOT EXISTS revoked_tokens_expiry ON revoked_tokens (expires_at);
   CREATE TABLE IF NOT EXISTS finished_tasks (task_id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
   CREATE INDEX IF NOT EXISTS finished_tasks_expiry ON finished_tasks (expires_at);
   CREATE TABLE IF NOT EXISTS approvals (id TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at INTEGER NOT NULL);
   ${NOTIFICATIONS_TABLE};`,
  // The token an admitted attestation was exchanged for, and when: what a revocation of every token needs.
  `ALTER TABLE seen_attestations ADD COLUMN token_jti TEXT;
   ALTER TABLE seen_attestations ADD COLUMN token_exp INTEGER;
   ALTER TABLE seen_attestations ADD COLUMN admitted_ms INTEGER;
   CREATE INDEX seen_attestations_admitted ON seen_attestations (admitted_ms) WHERE token_jti IS NOT NULL;
   CREATE TABLE agent_status (id INTEGER PRIMARY KEY CHECK (id = 1), status TEXT NOT NULL);`,
  // A used attestation costs one row written, not four: its key is the table's only b-tree (no rowid, no
  // index on expiry or admission time). Every row is written again to be deleted, so each index cost twice
  // per token; what the indexes served is rare (the cleanup, once a minute at most; an agent's revocation)
  // and reads a table that holds only a few minutes of attestations.
  `CREATE TABLE seen_attestations_keyed (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, token_jti TEXT,
     token_exp INTEGER, admitted_ms INTEGER) WITHOUT ROWID;
   INSERT INTO seen_attestations_keyed SELECT key, expires_at, token_jti, token_exp, admitted_ms FROM seen_attestations;
   DROP TABLE seen_attestations;
   ALTER TABLE seen_attestations_keyed RENAME TO seen_attestations;`,
];

export interface AgentStatus {
  suspended: boolean;
  /**
   * Tokens of this agent issued (`iat`) before this epoch second are dead; so is every token admitted before
   * the change that set it.
   */
  revokedBefore: number | null;
  /** Who last suspended, resumed or revoked the agent, when and why. */
  lastChange: { action: StatusAction; by: string; reason: string; at: number } | null;
}

export type StatusAction = 'revoke' | 'suspend' | 'resume';

export interface TokenRef {
  jti: string;
  taskId: string;
  iat: number;
}

/** What a change asked for with a DPoP-bound token came to: made, or refused for a proof used before. */
export type ProvenChange = 'changed' | 'proof_replayed';

export type TokenStatus =
  | { active: true }
  | { active: false; reason: 'revoked' | 'revoked_before' | 'suspended' | 'task_finished' };

interface Bucket {
  tokens: number;
  at: number;
}

const LEGACY_STATUS_KEY = 'status';
const NO_STATUS: AgentStatus = { suspended: false, revokedBefore: null, lastChange: null };

const nowSeconds = () => Date.now() / 1000;

export class AgentState extends MeteredObject {
  readonly #sql: SqlStorage;
  readonly #audit: AuditOutbox;
  /** Replays of a used attestation and repeated revokes of one token: sampled, counted in storage. */
  readonly #sampler: AuditSampler;
  readonly #alarm: AlarmSchedule;
  #status: AgentStatus = NO_STATUS;
  /** The rate-limit bucket lives in memory: an evicted object starts again with a full bucket. */
  #bucket: Bucket | undefined;
  /** DPoP nonces live in memory too: after an eviction, an agent's next proof is asked for the new one. */
  #nonces: { current: string; previous: string | undefined; issuedAt: number } | undefined;
  /** The earliest `expires_at` among the rows stored (epoch seconds): when cleanup is due. */
  #expiresAt: number | null;
  /** When the next notification is due (epoch seconds), kept with the table so scheduling reads no row. */
  #notifyAt: number | null;
  /** While an exchange runs: the records it commits, for the worker to send. */
  #handingOut: string[] | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const agentId = this.ctx.id.name;
    if (agentId === undefined) throw new Error('AgentState objects are addressed by agent id');
    this.#sql = this.ctx.storage.sql;
    migrate(this.#sql, SCHEMA);
    this.#audit = new AuditOutbox(this.#sql, agentChain(agentId), auditTransport(this.env));
    this.#sampler = new AuditSampler(this.#sql, this.#audit);
    this.#alarm = new AlarmSchedule(this.ctx.storage);
    this.#expiresAt = this.#earliestExpiry();
    this.#notifyAt = this.#nextNotification();
    const stored = this.#sql.exec<{ status: string }>('SELECT status FROM agent_status').toArray()[0];
    if (stored !== undefined) this.#status = JSON.parse(stored.status) as AgentStatus;
    // Objects from before the status moved into SQL kept it under a key-value key.
    else
      void this.ctx.blockConcurrencyWhile(async () => {
        this.#status = (await this.ctx.storage.get<AgentStatus>(LEGACY_STATUS_KEY)) ?? NO_STATUS;
      });
  }

  #has(table: 'seen_attestations' | 'revoked_tokens' | 'finished_tasks', column: string, value: string): boolean {
    const now = Math.floor(nowSeconds());
    return (
      this.#sql.exec(`SELECT 1 FROM ${table} WHERE ${column} = ? AND expires_at >= ?`, value, now).toArray().length > 0
    );
  }

  /**
   * Commits the decision's audit record to the agent's chain, in the caller's transaction; during an
   * exchange, handed back to the worker to send.
   */
  #record(draft: AuditDraft, outcome: AuditOutcome): void {
    const record = decideRecord(draft, outcome, loadedPolicy().bundle.version);
    if (this.#handingOut === undefined) this.#audit.append(record);
    else this.#handingOut.push(this.#audit.appendHandedOut(record));
  }

  /** Commits the record in full while its window's sample lasts, else counts it (`audit/sampler.ts`). */
  #sample(kind: SampledKind, draft: AuditDraft, outcome: AuditOutcome): void {
    this.#sampler.take(kind, decideRecord(draft, outcome, loadedPolicy().bundle.version));
  }

  /** Takes one request from the bucket, or says how long until one is there. */
  #takeFromBucket(limit: RateLimit): number | undefined {
    const now = nowSeconds();
    const perSecond = limit.perMinute / 60;
    const previous = this.#bucket ?? { tokens: limit.burst, at: now };
    const tokens = Math.min(limit.burst, previous.tokens + (now - previous.at) * perSecond);
    if (tokens < 1) {
      this.#bucket = { tokens, at: now };
      return Math.max(1, Math.ceil((1 - tokens) / perSecond));
    }
    this.#bucket = { tokens: tokens - 1, at: now };
    return undefined;
  }

  /** The nonce to hand out now, rotated every {@link DPOP_NONCE_LIFETIME_SECONDS}; the previous one still counts. */
  #dpopNonces(): { current: string; previous: string | undefined } {
    const now = nowSeconds();
    const nonces = this.#nonces;
    const age = nonces === undefined ? Number.POSITIVE_INFINITY : now - nonces.issuedAt;
    if (nonces !== undefined && age < DPOP_NONCE_LIFETIME_SECONDS) return nonces;
    // The one handed out until now stays good for one more lifetime, not for however long nobody asked.
    const previous = age < 2 * DPOP_NONCE_LIFETIME_SECONDS ? nonces?.current : undefined;
    this.#nonces = { current: crypto.randomUUID(), previous, issuedAt: now };
    return this.#nonces;
  }

  /** Remembers a used attestation (with the token it became, if any) or DPoP proof until `until`. */
  #markUsed(key: string, until: number, token?: { jti: string; exp: number }): void {
    const expiresAt = until + CLOCK_MARGIN_SECONDS;
    this.#sql.exec(
      `INSERT OR REPLACE INTO seen_attestations (key, expires_at, token_jti, token_exp, admitted_ms)
       VALUES (?, ?, ?, ?, ?)`,
      key,
      expiresAt,
      token?.jti ?? null,
      token?.exp ?? null,
      token === undefined ? null : Date.now(),
    );
    this.#expiring(expiresAt);
  }

  /** Notes a row that expires at `at` (epoch seconds), so that the cleanup alarm is due by then. */
  #expiring(at: number): void {
    if (this.#expiresAt === null || at < this.#expiresAt) this.#expiresAt = at;
  }

  /** What storage says of an exchange's attestation, DPoP proof and task: one query for the three. */
  #remembered(admission: Admission): { replayed: boolean; proofReplayed: boolean; taskFinished: boolean } {
    const row = this.#sql
      .exec<{ replayed: number; proofReplayed: number; taskFinished: number }>(
        `SELECT EXISTS (SELECT 1 FROM seen_attestations WHERE key = ?1 AND expires_at >= ?4) AS replayed,
           EXISTS (SELECT 1 FROM seen_attestations WHERE key = ?2 AND expires_at >= ?4) AS proofReplayed,
           EXISTS (SELECT 1 FROM finished_tasks WHERE task_id = ?3 AND expires_at >= ?4) AS taskFinished`,
        admission.replayKey,
        admission.dpop?.replayKey ?? null,
        admission.taskId,
        Math.floor(nowSeconds()),
      )
      .one();
    return {
      replayed: row.replayed === 1,
      proofReplayed: row.proofReplayed === 1,
      taskFinished: row.taskFinished === 1,
    };
  }

  /**
   * The checks every exchange passes, in order; undefined when admitted.
   *
   * A replay is refused before the rate limit and takes nothing from the agent's bucket, on purpose. Whoever
   * replays holds an attestation the agent has used, not the agent's key: charging the bucket would let them
   * starve the agent of tokens (a lockout for the price of a copied attestation), and a replay refused as
   * `rate_limited` would no longer say it was a replay. Nor would a limit spare the object any work: the call
   * is made either way. What a replay flood could cost is records, and those are sampled per attestation.
   */
  #admit(admission: Admission): { refusal?: ExchangeRefusal; dpopNonce?: string } {
    if (this.#status.suspended) return { refusal: { reason: 'suspended' } };
    const remembered = this.#remembered(admission);
    if (remembered.replayed) return { refusal: { reason: 'replayed' } };
    const { dpop } = admission;
    let dpopNonce: string | undefined;
    if (dpop?.requireNonce) {
      const nonces = this.#dpopNonces();
      dpopNonce = nonces.current;
      if (dpop.nonce === undefined || (dpop.nonce !== nonces.current && dpop.nonce !== nonces.previous))
        return { refusal: { reason: 'dpop_nonce', dpopNonce }, dpopNonce };
    }
    const withNonce = dpopNonce === undefined ? {} : { dpopNonce };
    if (remembered.proofReplayed) return { refusal: { reason: 'dpop_replayed' }, ...withNonce };
    if (remembered.taskFinished) return { refusal: { reason: 'task_finished' }, ...withNonce };
    const retryAfter = this.#takeFromBucket(admission.rateLimit);
    if (retryAfter !== undefined) return { refusal: { reason: 'rate_limited', retryAfter }, ...withNonce };
    return withNonce;
  }

  /** The attestation and DPoP proof of an admitted request, used up; with the token they became, if one. */
  #consume(admission: Admission, token?: Grant): void {
    this.#markUsed(
      admission.replayKey,
      admission.replayUntil,
      token === undefined ? undefined : { jti: token.tokenJti, exp: token.tokenExp },
    );
    if (admission.dpop !== undefined) this.#markUsed(admission.dpop.replayKey, admission.dpop.replayUntil);
  }

  #grantOutcome(grant: Grant, extra: Record<string, unknown> = {}): AuditOutcome {
    return { decision: 'granted', details: { ...grant.details, ...extra } };
  }

  /**
   * Admits a `/token` request and commits what the worker decided, with the decision's audit record, in one
   * transaction: a grant, an approval collected or polled, an approval opened, or a policy refusal. A request
   * the object refuses (suspended, replayed, task finished, rate limited, nonce) is recorded as refused and
   * uses up nothing; an admitted one uses up its attestation and DPoP proof.
   */
  async exchange(call: ExchangeCall): Promise<ExchangeResult> {
    // With `handBack`, the call's records go back with its answer: the worker sends them with its isolate's
    // other agents'.
    const records: string[] = [];
    this.#handingOut = call.handBack ? records : undefined;
    let result: ExchangeResult;
    try {
      result = this.#exchange(call);
    } finally {
      this.#handingOut = undefined;
    }
    await this.#schedule();
    return call.handBack ? { ...result, records } : result;
  }

  #exchange({ draft, admission, decision }: ExchangeCall): ExchangeResult {
    const { refusal, dpopNonce } = this.#admit(admission);
    const withNonce = dpopNonce === undefined ? {} : { dpopNonce };
    if (refusal !== undefined) {
      const spec = exchangeRefusal(refusal, admission.taskId);
      const outcome: AuditOutcome = { decision: 'refused', reason: spec.reason, details: spec.detail };
      // Anyone with a copy of a used attestation can replay it as often as they like: sampled per attestation.
      if (refusal.reason === 'replayed') this.#sample('replay', draft, outcome);
      else this.#record(draft, outcome);
      return { outcome: 'refused', refusal, ...withNonce };
    }
    const granted = (grant: Grant) => ({
      ...draft,
      grantedActions: grant.grantedActions,
      tokenJti: grant.tokenJti,
      tokenExp: grant.tokenExp,
    });
    switch (decision.kind) {
      case 'grant': {
        this.#consume(admission, decision.grant);
        this.#record(granted(decision.grant), this.#grantOutcome(decision.grant));
        return { outcome: 'granted', ...withNonce };
      }
      case 'collect': {
        const polled = this.#poll(decision.approvalId, decision.terms);
        if (polled.outcome.status === 'approved') {
          this.#saveApproval(polled.record as ApprovalRecord);
          const approval = { id: decision.approvalId, by: polled.outcome.by };
          this.#consume(admission, decision.grant);
          this.#record(granted(decision.grant), this.#grantOutcome(decision.grant, { approval }));
          return { outcome: 'granted', approvedBy: polled.outcome.by, ...withNonce };
        }
        this.#consume(admission);
        return { ...this.#pollRefused(draft, admission.taskId, decision.approvalId, polled), ...withNonce };
      }
      case 'open': {
        this.#consume(admission);
        const { approval, message } = decision;
        this.#saveApproval(approval);
        if (message !== undefined) {
          queueNotification(this.#sql, message, approval.createdAt, approval.expiresAt);
          this.#notifyAt = this.#nextNotification();
        }
        this.#record(draft, {
          decision: 'refused',
          reason: 'approval_required',
          details: { approvalId: approval.id, requirement: approval.requirement },
        });
        return { outcome: 'recorded', ...withNonce };
      }
      case 'refuse': {
        this.#consume(admission);
        if (decision.approval !== undefined) {
          const polled = this.#poll(decision.approval.id, decision.approval.terms);
          if (polled.outcome.status !== 'approved')
            return { ...this.#pollRefused(draft, admission.taskId, decision.approval.id, polled), ...withNonce };
        }
        this.#record(draft, { decision: 'refused', reason: decision.reason, details: decision.details });
        return { outcome: 'recorded', ...withNonce };
      }
    }
  }

  /** What polling an approval finds, and the record as the poll leaves it (saved only by the caller). */
  #poll(id: string, terms: ApprovalTerms): { outcome: PollOutcome | { status: 'unknown' }; record?: ApprovalRecord } {
    const record = this.#approval(id);
    if (record === undefined) return { outcome: { status: 'unknown' } };
    return pollApproval(record, terms, Math.floor(nowSeconds()));
  }

  /** Records and answers a poll that did not collect, keeping what the poll changed (its time). */
  #pollRefused(
    draft: AuditDraft,
    taskId: string,
    approvalId: string,
    polled: { outcome: PollOutcome | { status: 'unknown' }; record?: ApprovalRecord },
  ): ExchangeResult {
    const { outcome } = polled;
    if (outcome.status === 'approved') throw new Error('an approved poll collects');
    if (polled.record !== undefined) this.#saveApproval(polled.record);
    const refusal: ExchangeRefusal = { reason: 'approval', approvalId, poll: outcome };
    const spec = exchangeRefusal(refusal, taskId);
    this.#record(draft, { decision: 'refused', reason: spec.reason, details: spec.detail });
    return { outcome: 'refused', refusal };
  }

  /**
   * Records a refusal the worker decided before admission could run (a DPoP proof that does not verify, a
   * proof the policy requires and the request lacks, the kill switch): nothing is used up.
   */
  async record(draft: AuditDraft, outcome: AuditOutcome): Promise<void> {
    this.#record(draft, outcome);
    await this.#schedule();
  }

  #approval(id: string): ApprovalRecord | undefined {
    const row = this.#sql.exec<{ record: string }>('SELECT record FROM approvals WHERE id = ?', id).toArray()[0];
    return row === undefined ? undefined : (JSON.parse(row.record) as ApprovalRecord);
  }

  #saveApproval(record: ApprovalRecord): void {
    const expiresAt = record.expiresAt + APPROVAL_RETENTION_SECONDS;
    this.#sql.exec(
      'INSERT OR REPLACE INTO approvals (id, record, expires_at) VALUES (?, ?, ?)',
      record.id,
      JSON.stringify(record),
      expiresAt,
    );
    this.#expiring(expiresAt);
  }

  /** An approval, for an approver; with `draft`, the read is recorded. */
  async approval(id: string, draft?: AuditDraft): Promise<ApprovalRecord | undefined> {
    const record = this.#approval(id);
    if (draft !== undefined) {
      this.#record(
        draft,
        record === undefined
          ? { decision: 'refused', reason: 'unknown_target', details: { approval: id } }
          : { decision: 'granted' },
      );
      await this.#schedule();
    }
    return record;
  }

  /** An approver's decision, recorded granted or refused (four-eyes, group, not pending); the record after it. */
  async decideApproval(
    id: string,
    input: { approver: Approver; decision: 'approve' | 'deny'; reason: string },
    draft: AuditDraft,
  ): Promise<{ outcome: DecideOutcome | { decided: false; reason: 'unknown' }; record?: ApprovalRecord }> {
    const result = this.#decideApproval(id, input, draft);
    await this.#schedule();
    return result;
  }

  #decideApproval(
    id: string,
    input: { approver: Approver; decision: 'approve' | 'deny'; reason: string },
    draft: AuditDraft,
  ): { outcome: DecideOutcome | { decided: false; reason: 'unknown' }; record?: ApprovalRecord } {
    const record = this.#approval(id);
    if (record === undefined) {
      this.#record(draft, { decision: 'refused', reason: 'unknown_target', details: { approval: id } });
      return { outcome: { decided: false, reason: 'unknown' } };
    }
    const now = Math.floor(nowSeconds());
    const decided = decideApproval(record, input, now);
    if (decided.outcome.decided) {
      this.#saveApproval(decided.record);
      this.#record(draft, {
        decision: 'granted',
        details: { decision: input.decision, status: approvalStatus(decided.record, now) },
      });
    } else if (decided.outcome.reason === 'not_pending') {
      this.#record(draft, {
        decision: 'refused',
        reason: 'approval_not_pending',
        details: { status: approvalStatus(record, now) },
      });
    } else {
      this.#record(draft, {
        decision: 'refused',
        reason: 'approver_not_allowed',
        details: { rule: decided.outcome.reason, requirement: record.requirement },
      });
    }
    return decided;
  }

  /**
   * Puts a collected approval back to approved when no token came of the collection (signing failed after
   * it), and records that the token it was granted for never left.
   */
  async releaseApproval(id: string, draft: AuditDraft, outcome: AuditOutcome): Promise<void> {
    const record = this.#approval(id);
    if (record?.status === 'collected') this.#saveApproval({ ...record, status: 'approved' });
    this.#record(draft, outcome);
    await this.#schedule();
  }

  /** Whether a token of this agent is still alive as far as revocation, suspension and tasks go. */
  async tokenStatus(token: TokenRef): Promise<TokenStatus> {
    if (this.#status.suspended) return { active: false, reason: 'suspended' };
    if (this.#status.revokedBefore !== null && token.iat < this.#status.revokedBefore) {
      return { active: false, reason: 'revoked_before' };
    }
    if (this.#has('revoked_tokens', 'jti', token.jti)) return { active: false, reason: 'revoked' };
    if (this.#has('finished_tasks', 'task_id', token.taskId)) return { active: false, reason: 'task_finished' };
    return { active: true };
  }

  /** The agent's status; with `draft`, an admin's read, recorded. */
  async status(draft?: AuditDraft): Promise<AgentStatus> {
    if (draft !== undefined) {
      this.#record(draft, { decision: 'granted' });
      await this.#schedule();
    }
    return this.#status;
  }

  #revoke(jti: string, exp: number): void {
    this.#sql.exec('INSERT OR REPLACE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)', jti, exp);
    this.#expiring(exp);
  }

  /**
   * Uses up the DPoP proof a change was asked with (RFC 9449 §11.1), in the change's transaction; false, with
   * the refusal recorded, when it was used before. No proof (a bearer token, an admin) passes.
   */
  #useProof(proof: ProofReplay | undefined, draft: AuditDraft | undefined): boolean {
    if (proof === undefined) return true;
    if (this.#has('seen_attestations', 'key', proof.replayKey)) {
      if (draft !== undefined) this.#record(draft, { decision: 'refused', reason: 'dpop_proof_reused' });
      return false;
    }
    this.#markUsed(proof.replayKey, proof.replayUntil);
    return true;
  }

  /**
   * Revokes one token until it would have expired anyway, and records who did. With `proof` (the token is
   * DPoP-bound), only if the proof was not used before. A token holder's revoke of a token already revoked
   * changes nothing and anyone with the token can repeat it: sampled per token. The first revoke of a token,
   * and every admin's (the draft names an actor), is recorded in full.
   */
  async revokeToken(jti: string, exp: number, draft: AuditDraft, proof?: ProofReplay): Promise<ProvenChange> {
    const proven = this.#useProof(proof, draft);
    if (proven) {
      const repeat = draft.actor == null && this.#has('revoked_tokens', 'jti', jti);
      if (repeat) this.#sample('repeat_revoke', draft, { decision: 'granted' });
      else {
        this.#revoke(jti, exp);
        this.#record(draft, { decision: 'granted' });
      }
    }
    await this.#schedule();
    return proven ? 'changed' : 'proof_replayed';
  }

  /**
   * Finishes a task: every token of it is dead, and no new one is issued for it. Recorded here with `draft`;
   * without (a task revoked across agents), the caller records the one decision elsewhere. With `proof` (the
   * agent's token is DPoP-bound), only if the proof was not used before.
   */
  async finishTask(taskId: string, draft?: AuditDraft, proof?: ProofReplay): Promise<ProvenChange> {
    const proven = this.#useProof(proof, draft);
    if (proven) {
      const until = Math.ceil(nowSeconds()) + FINISHED_TASK_RETENTION_SECONDS;
      this.#sql.exec('INSERT OR REPLACE INTO finished_tasks (task_id, expires_at) VALUES (?, ?)', taskId, until);
      this.#expiring(until);
      if (draft !== undefined) this.#record(draft, { decision: 'granted' });
    }
    await this.#schedule();
    return proven ? 'changed' : 'proof_replayed';
  }

  /**
   * Revokes every token the agent holds now: those issued before this second by `iat`, and those admitted in
   * the last {@link RECENT_ADMISSIONS_MS} one by one. A token asked for after this answers is not touched.
   */
  #revokeAllNow(now: number): number {
    const recent = this.#sql
      .exec<{ token_jti: string; token_exp: number }>(
        'SELECT token_jti, token_exp FROM seen_attestations WHERE token_jti IS NOT NULL AND admitted_ms >= ?',
        now - RECENT_ADMISSIONS_MS,
      )
      .toArray();
    for (const token of recent) this.#revoke(token.token_jti, token.token_exp);
    return Math.floor(now / 1000);
  }

  /**
   * An admin's change of the agent, recorded with it: `revoke` kills every token it holds now; `suspend`
   * does that and refuses every `/token` until `resume` (which revives nothing).
   */
  async changeStatus(action: StatusAction, by: string, reason: string, draft: AuditDraft): Promise<AgentStatus> {
    const now = Date.now();
    const lastChange = { action, by, reason, at: Math.floor(now / 1000) };
    const status: AgentStatus =
      action === 'resume'
        ? { ...this.#status, suspended: false, lastChange }
        : {
            suspended: action === 'suspend' || this.#status.suspended,
            revokedBefore: this.#revokeAllNow(now),
            lastChange,
          };
    // The status and its record, in one transaction: no await between them.
    this.#sql.exec('INSERT OR REPLACE INTO agent_status (id, status) VALUES (1, ?)', JSON.stringify(status));
    this.#status = status;
    this.#record(draft, { decision: 'granted' });
    await this.#schedule();
    return status;
  }

  /** Tokens granted here whose records are not in D1 yet, by token id or task. */
  async pendingGrants(filter: { jti?: string; taskId?: string }) {
    return this.#audit.pendingGrants(filter);
  }

  /** Records not yet in D1, and how old the oldest is. */
  async backlog(): Promise<Backlog> {
    return this.#audit.backlog();
  }

  /** The chain's head and what D1 is known to hold. */
  async heads(): Promise<{ head: ChainHead; acked: ChainHead }> {
    return this.#audit.heads();
  }

  /**
   * Forgets the records D1 holds and sends the rest to the audit queue now (tests, admins waiting on the backlog); with `closeWindows`,
   * first closes every open sampling window into its summary (tests, which do not wait for windows to end).
   */
  async flushAudit(closeWindows = false): Promise<boolean> {
    if (closeWindows) this.#sampler.summarise(Number.POSITIVE_INFINITY);
    const done = await this.#audit.flush();
    await this.#schedule();
    return done;
  }

  /** The alarm is due when records should leave, a sampling window closes, a notification is due, or a row expires. */
  async #schedule(): Promise<void> {
    await this.#alarm.noLaterThan(
      this.#audit.flushAt(),
      this.#sampler.dueAt(),
      this.#notifyAt === null ? null : this.#notifyAt * 1000,
      // Expired rows are forgotten a minute late at most, so that one alarm forgets a minute's rows, not one each.
      this.#expiresAt === null ? null : (this.#expiresAt + CLEANUP_SLACK_SECONDS) * 1000,
    );
  }

  #nextNotification(): number | null {
    return this.#sql.exec<{ at: number | null }>('SELECT MIN(next_at) AS at FROM notifications').one().at;
  }

  /** The earliest expiry among every table's rows (epoch seconds), read from storage. */
  #earliestExpiry(): number | null {
    return this.#sql
      .exec<{ at: number | null }>(
        `SELECT MIN(at) AS at FROM (
           SELECT MIN(expires_at) AS at FROM seen_attestations
           UNION ALL SELECT MIN(expires_at) FROM revoked_tokens
           UNION ALL SELECT MIN(expires_at) FROM finished_tasks
           UNION ALL SELECT MIN(expires_at) FROM approvals)`,
      )
      .one().at;
  }

  /**
   * Forwards waiting audit records to D1, summarises sampling windows that closed, delivers approval
   * notifications that are due, and forgets what can no longer matter: used attestations, revoked tokens,
   * finished tasks and approvals past their retention.
   */
  override async alarm(): Promise<void> {
    this.#alarm.fired();
    const now = Math.floor(nowSeconds());
    // Each part only when it is due: a busy object's alarm is mostly forwarding, and the others' queries
    // would cost every forwarding as much again.
    if (this.#notifyAt !== null && this.#notifyAt <= now) {
      await deliverDue(
        this.#sql,
        this.env,
        now,
        (id) => {
          const record = this.#approval(id);
          return record !== undefined && approvalStatus(record, now) === 'pending';
        },
        (attempt) => this.#audit.append(attempt),
      );
      this.#notifyAt = this.#nextNotification();
    }
    if (this.#expiresAt !== null && this.#expiresAt < now) {
      for (const table of ['seen_attestations', 'revoked_tokens', 'finished_tasks', 'approvals']) {
        this.#sql.exec(`DELETE FROM ${table} WHERE expires_at < ?`, now);
      }
      this.#expiresAt = this.#earliestExpiry();
    }
    // A no-op, reading nothing, until the oldest open window has closed.
    this.#sampler.summarise(Date.now());
    await this.#audit.flushDue();
    await this.#schedule();
  }
}
