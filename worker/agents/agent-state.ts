/**
 * Per-agent durable state, one object per agent id, and the agent's audit chain. `/token` makes one call
 * here ({@link AgentState.exchange}): the object admits the request (suspended? attestation or DPoP proof
 * replayed? task finished? rate limited?), commits what the worker decided (a grant, an approval opened or
 * collected, a refusal) and the decision's audit record, all in one storage transaction. Admins and token
 * holders change it (revoke, suspend, resume, finish a task, decide an approval), each change committed with
 * its record; introspection reads it.
 *
 * The object is the transaction boundary: each method here composes the parts that own its concerns, over
 * the same SQLite storage (admission, replay marks, revocations, approvals, notifications, what an
 * exchange's decision changes, expiry; the chain from `audit/audited-object.ts`), and awaits nothing
 * between a change and its record. Every change is written to the object's storage before the call
 * returns, so a revocation that has answered survives the object being evicted or restarted, and so does
 * the record of every decision.
 */
import { AuditedObject } from '../audit/audited-object';
import { type AuditDraft, type AuditOutcome, agentChain, decideRecord } from '../audit/record';
import type { SampledKind } from '../audit/sampler';
import type { ApprovalRecord, ApprovalStatus, Approver, DecideOutcome } from '../core/approval';
import type { ExchangeCall, ExchangeRefusal, ExchangeResult, Grant, ProofReplay } from '../core/exchange';
import { exchangeRefusal } from '../core/exchange';
import { STATUS } from '../core/status-list';
import { loadedPolicy } from '../policy/loaded';
import { AdmissionGate } from './admission';
import { Approvals } from './approvals';
import { ExchangeDecisions } from './exchange-decisions';
import { Expiry } from './expiry';
import { ApprovalNotifications } from './notifications';
import { ReplayMarks } from './replay-marks';
import { type AgentStatus, Revocations, type StatusAction, type TokenRef, type TokenStatus } from './revocations';
import { AGENT_SCHEMA } from './schema';
import { StatusFlips } from './status-flips';

export type { AgentStatus, StatusAction, TokenRef, TokenStatus } from './revocations';

/** What a change asked for with a DPoP-bound token came to: made, or refused for a proof used before. */
export type ProvenChange = 'changed' | 'proof_replayed';

const nowSeconds = () => Date.now() / 1000;

/** The draft of a grant's record: the token it became. */
const grantedDraft = (draft: AuditDraft, grant: Grant): AuditDraft => ({
  ...draft,
  grantedActions: grant.grantedActions,
  tokenJti: grant.tokenJti,
  tokenExp: grant.tokenExp,
});

/** One agent's object: the transaction boundary over its parts. */
export class AgentState extends AuditedObject {
  readonly #expiry: Expiry;
  readonly #marks: ReplayMarks;
  readonly #revocations: Revocations;
  readonly #approvals: Approvals;
  readonly #notifications: ApprovalNotifications;
  readonly #gate: AdmissionGate;
  readonly #flips: StatusFlips;
  readonly #decisions: ExchangeDecisions;
  /** While an exchange runs: the records it commits, for the worker to send. */
  #handingOut: string[] | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    const agentId = ctx.id.name;
    if (agentId === undefined) throw new Error('AgentState objects are addressed by agent id');
    super(ctx, env, { chain: agentChain(agentId), schema: AGENT_SCHEMA });
    const { sql } = this.ctx.storage;
    this.#expiry = new Expiry(sql);
    this.#notifications = new ApprovalNotifications(sql);
    const rows = { sql, expiry: this.#expiry };
    this.#marks = new ReplayMarks(rows);
    this.#approvals = new Approvals(rows);
    this.#revocations = new Revocations(this.ctx, this.#expiry, this.#marks);
    this.#gate = new AdmissionGate(this.#revocations, this.#marks);
    this.#flips = new StatusFlips(sql, this.env);
    this.#decisions = new ExchangeDecisions(this.#approvals, this.#notifications);
  }

  /**
   * Sends the status flips the change just committed (and any still waiting) to their lists, after the
   * alarm that would retry them is set.
   *
   * @throws {Error} when a list did not take them: the change is committed, its answer is 503, and the
   *   alarm sends them again.
   */
  async #afterChange(): Promise<void> {
    await this.schedule();
    try {
      await this.#flips.send();
    } catch (error) {
      // The retry's time is known only now: the alarm must not wait for the chain's next reason to fire.
      await this.schedule();
      throw error;
    }
  }

  /**
   * Commits the decision's audit record to the agent's chain, in the caller's transaction; during an
   * exchange, handed back to the worker to send.
   */
  #record(draft: AuditDraft, outcome: AuditOutcome): void {
    const record = decideRecord(draft, outcome, loadedPolicy().bundle.version);
    if (this.#handingOut === undefined) this.outbox.append(record);
    else this.#handingOut.push(this.outbox.appendHandedOut(record));
  }

  /** Commits the record in full while its window's sample lasts, else counts it (`audit/sampler.ts`). */
  #sample(kind: SampledKind, draft: AuditDraft, outcome: AuditOutcome): void {
    this.sampler.take(kind, decideRecord(draft, outcome, loadedPolicy().bundle.version));
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
      const { refusal, dpopNonce } = this.#gate.admit(call.admission, nowSeconds());
      result = refusal === undefined ? this.#commit(call) : this.#refuse(call, refusal);
      if (dpopNonce !== undefined) result = { ...result, dpopNonce };
    } finally {
      this.#handingOut = undefined;
    }
    await this.schedule();
    return call.handBack ? { ...result, records } : result;
  }

  /** Records a request the object refused; a replayed attestation is sampled, as anyone with a copy can replay it. */
  #refuse({ draft, admission }: ExchangeCall, refusal: ExchangeRefusal): ExchangeResult {
    const spec = exchangeRefusal(refusal, admission.taskId);
    const outcome: AuditOutcome = { decision: 'refused', reason: spec.reason, details: spec.detail };
    if (refusal.reason === 'replayed') this.#sample('replay', draft, outcome);
    else this.#record(draft, outcome);
    return { outcome: 'refused', refusal };
  }

  /** Commits an admitted request's decision: what it changes, its attestation and proof used up, its record. */
  #commit({ draft, admission, decision }: ExchangeCall): ExchangeResult {
    const { result, outcome, grant } = this.#decisions.decide(decision, admission.taskId, Math.floor(nowSeconds()));
    this.#marks.consume(admission, grant);
    this.#record(grant === undefined ? draft : grantedDraft(draft, grant), outcome);
    return result;
  }

  /**
   * Records a refusal the worker decided before admission could run (a DPoP proof that does not verify, a
   * proof the policy requires and the request lacks, the kill switch): nothing is used up.
   */
  async record(draft: AuditDraft, outcome: AuditOutcome): Promise<void> {
    this.#record(draft, outcome);
    await this.schedule();
  }

  /** An approval, for an approver; with `draft`, the read is recorded. */
  async approval(id: string, draft?: AuditDraft): Promise<ApprovalRecord | undefined> {
    const record = this.#approvals.get(id);
    if (draft !== undefined) {
      this.#record(
        draft,
        record === undefined
          ? { decision: 'refused', reason: 'unknown_target', details: { approval: id } }
          : { decision: 'granted' },
      );
      await this.schedule();
    }
    return record;
  }

  /** Those of `ids` the object keeps, for the approvals listing (which records itself), in the order given. */
  async approvalsOf(ids: readonly string[]): Promise<ApprovalRecord[]> {
    return ids.flatMap((id) => this.#approvals.get(id) ?? []);
  }

  /** How many of its approvals are in each status now, for the approvals listing. */
  async approvalCounts(): Promise<Record<ApprovalStatus, number>> {
    return this.#approvals.counts(Math.floor(nowSeconds()));
  }

  /** An approver's decision, recorded granted or refused (four-eyes, group, not pending); the record after it. */
  async decideApproval(
    id: string,
    input: { approver: Approver; decision: 'approve' | 'deny'; reason: string },
    draft: AuditDraft,
  ): Promise<{ outcome: DecideOutcome | { decided: false; reason: 'unknown' }; record?: ApprovalRecord }> {
    const { audit, ...decided } = this.#approvals.decide(id, input, Math.floor(nowSeconds()));
    this.#record(draft, audit);
    await this.schedule();
    return decided;
  }

  /**
   * Puts a collected approval back to approved when no token came of the collection (signing failed after
   * it), and records that the token it was granted for never left.
   */
  async releaseApproval(id: string, draft: AuditDraft, outcome: AuditOutcome): Promise<void> {
    this.#approvals.release(id);
    this.#record(draft, outcome);
    await this.schedule();
  }

  /** Whether a token of this agent is still alive as far as revocation, suspension and tasks go. */
  async tokenStatus(token: TokenRef): Promise<TokenStatus> {
    return this.#revocations.tokenStatus(token, Math.floor(nowSeconds()));
  }

  /** The agent's status; with `draft`, an admin's read, recorded. */
  async status(draft?: AuditDraft): Promise<AgentStatus> {
    if (draft !== undefined) {
      this.#record(draft, { decision: 'granted' });
      await this.schedule();
    }
    return this.#revocations.status;
  }

  /**
   * Uses up the DPoP proof a change was asked with (RFC 9449 §11.1), in the change's transaction; false, with
   * the refusal recorded, when it was used before. No proof (a bearer token, an admin) passes.
   */
  #useProof(proof: ProofReplay | undefined, draft: AuditDraft | undefined): boolean {
    if (proof === undefined) return true;
    if (this.#marks.seen(proof.replayKey, Math.floor(nowSeconds()))) {
      if (draft !== undefined) this.#record(draft, { decision: 'refused', reason: 'dpop_proof_reused' });
      return false;
    }
    this.#marks.markUsed(proof.replayKey, proof.replayUntil);
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
      const repeat = draft.actor == null && this.#revocations.revoked(jti, Math.floor(nowSeconds()));
      if (repeat) this.#sample('repeat_revoke', draft, { decision: 'granted' });
      else {
        this.#revocations.revoke(jti, exp);
        this.#flips.queue(this.#marks.liveEntries(Math.floor(nowSeconds()), { jti }), STATUS.INVALID);
        this.#record(draft, { decision: 'granted' });
      }
    }
    await this.#afterChange();
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
      this.#revocations.finishTask(taskId, nowSeconds());
      this.#flips.queue(this.#marks.liveEntries(Math.floor(nowSeconds()), { taskId }), STATUS.INVALID);
      if (draft !== undefined) this.#record(draft, { decision: 'granted' });
    }
    await this.#afterChange();
    return proven ? 'changed' : 'proof_replayed';
  }

  /**
   * An admin's change of the agent, recorded with it: `revoke` kills every token it holds now (with
   * `suspend`, and refuses every later `/token` in the same transaction); `suspend` holds its tokens
   * inactive and refuses every `/token` until `resume`, which gives back the tokens nothing else killed.
   */
  async changeStatus(
    action: StatusAction,
    by: string,
    reason: string,
    draft: AuditDraft,
    options: { suspend?: boolean } = {},
  ): Promise<AgentStatus> {
    // The status and its record, in one transaction: no await between them.
    const nowMs = Date.now();
    const status = this.#revocations.change(action, by, reason, nowMs, options);
    this.#queueStatusFlips(action, Math.floor(nowMs / 1000));
    this.#record(draft, { decision: 'granted' });
    await this.#afterChange();
    return status;
  }

  /**
   * What an agent's change does to its live tokens' entries: revoke makes them INVALID, suspend SUSPENDED
   * (INVALID stays INVALID); resume sets each back to VALID if the token is alive by every other count, else
   * INVALID.
   */
  #queueStatusFlips(action: StatusAction, now: number): void {
    const live = this.#marks.liveEntries(now);
    if (action !== 'resume') {
      this.#flips.queue(live, action === 'revoke' ? STATUS.INVALID : STATUS.SUSPENDED);
      return;
    }
    for (const entry of live) {
      const token = { jti: entry.jti, taskId: entry.taskId ?? '', iat: Math.floor(entry.admittedMs / 1000) };
      const alive = this.#revocations.tokenStatus(token, now).active;
      this.#flips.queue([entry], alive ? STATUS.VALID : STATUS.INVALID);
    }
  }

  /** The expiry of a token granted here whose record is not in D1 yet. */
  async pendingGrant(jti: string): Promise<{ exp: number } | undefined> {
    return this.outbox.pendingGrant(jti);
  }

  /** Whether a request for the task, whatever its decision, is recorded here and not yet in D1. */
  async asksForTask(taskId: string): Promise<boolean> {
    return this.outbox.asksForTask(taskId);
  }

  /** Besides the chain's: when a notification is due, or a row expires. */
  protected override dueTimes(): (number | null)[] {
    return [this.#notifications.dueAt(), this.#expiry.dueAt(), this.#flips.dueAt()];
  }

  /**
   * Delivers approval notifications that are due, and forgets what can no longer matter: used attestations,
   * revoked tokens, finished tasks and approvals past their retention. Each only when it is due: a busy
   * object's alarm is mostly forwarding, and the others' queries would cost every forwarding as much again.
   */
  protected override async alarmWork(): Promise<void> {
    const now = Math.floor(nowSeconds());
    await this.#notifications.deliver(
      this.env,
      now,
      (id) => this.#approvals.pending(id, now),
      (attempt) => this.outbox.append(attempt),
    );
    this.#expiry.forgetExpired(now);
    // Flips a list did not take: sent again, with backoff, until it does.
    if (this.#flips.dueAt() !== null) await this.#flips.send().catch((error: unknown) => console.error(error));
  }
}
