/**
 * Per-agent durable state, one object per agent id. `/token` asks it one question (`admit`): is the agent
 * suspended, is the attestation a replay, is the task finished, is the agent over its rate limit? Admins
 * and token holders change it (revoke, suspend, resume, finish a task); introspection reads it.
 *
 * Every change is written to the object's storage before the call returns, so a revocation that has
 * answered survives the object being evicted or restarted.
 */
import { DurableObject } from 'cloudflare:workers';
import type { PendingApprovalMessage } from '../approvals/webhook';
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
import type { RateLimit } from '../policy/bundle';
import { deliverDue, NOTIFICATIONS_TABLE, queueNotification } from './notifications';

/**
 * Extra seconds a used attestation is remembered past `replayUntil`: the worker verified it before this
 * call, on a clock that may differ a little from this object's.
 */
const CLOCK_MARGIN_SECONDS = 60;
/** How long a finished task is remembered: its tokens are dead, and its id is not issued again. */
const FINISHED_TASK_RETENTION_SECONDS = 24 * 3600;
/** How long a decided or expired approval stays readable after its expiry. */
const APPROVAL_RETENTION_SECONDS = 24 * 3600;
/** A DPoP nonce is handed out for this long, and accepted for up to twice as long (RFC 9449 §8). */
const DPOP_NONCE_LIFETIME_SECONDS = 300;

export interface AdmitRequest {
  /** Issuer and `jti` of the attestation: accepted once. */
  replayKey: string;
  /** Epoch seconds until which the key must be remembered. */
  replayUntil: number;
  taskId: string;
  rateLimit: RateLimit;
  /** Polling a step-up approval (CIBA): its id and the exact terms asked for. */
  approval?: { id: string; terms: ApprovalTerms };
  /** The request's DPoP proof: its id is accepted once; with `requireNonce`, its nonce must be ours. */
  dpop?: { replayKey: string; replayUntil: number; nonce: string | undefined; requireNonce: boolean };
}

export type AdmitResult =
  | { admitted: true; approval?: PollOutcome | { status: 'unknown' }; dpopNonce?: string }
  | { admitted: false; reason: 'replayed' | 'suspended' | 'task_finished' | 'dpop_replayed' }
  | { admitted: false; reason: 'dpop_nonce'; dpopNonce: string }
  | { admitted: false; reason: 'rate_limited'; retryAfter: number };

export interface AgentStatus {
  suspended: boolean;
  /** Tokens of this agent issued (`iat`) before this epoch second are dead. */
  revokedBefore: number | null;
  /** Who last suspended, resumed or revoked the agent, when and why. */
  lastChange: { action: 'revoke' | 'suspend' | 'resume'; by: string; reason: string; at: number } | null;
}

export interface TokenRef {
  jti: string;
  taskId: string;
  iat: number;
}

export type TokenStatus =
  | { active: true }
  | { active: false; reason: 'revoked' | 'revoked_before' | 'suspended' | 'task_finished' };

interface Bucket {
  tokens: number;
  at: number;
}

const STATUS_KEY = 'status';
const NO_STATUS: AgentStatus = { suspended: false, revokedBefore: null, lastChange: null };

const nowSeconds = () => Date.now() / 1000;

export class AgentState extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  #status: AgentStatus = NO_STATUS;
  /** The rate-limit bucket lives in memory: an evicted object starts again with a full bucket. */
  #bucket: Bucket | undefined;
  /** When the alarm is set for (epoch ms), null for none, undefined until read from storage. */
  #alarmAt: number | null | undefined;
  /** DPoP nonces live in memory too: after an eviction, an agent's next proof is asked for the new one. */
  #nonces: { current: string; previous: string | undefined; issuedAt: number } | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec(
      `CREATE TABLE IF NOT EXISTS seen_attestations (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
       CREATE INDEX IF NOT EXISTS seen_attestations_expiry ON seen_attestations (expires_at);
       CREATE TABLE IF NOT EXISTS revoked_tokens (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
       CREATE INDEX IF NOT EXISTS revoked_tokens_expiry ON revoked_tokens (expires_at);
       CREATE TABLE IF NOT EXISTS finished_tasks (task_id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
       CREATE INDEX IF NOT EXISTS finished_tasks_expiry ON finished_tasks (expires_at);
       CREATE TABLE IF NOT EXISTS approvals (id TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at INTEGER NOT NULL);
       ${NOTIFICATIONS_TABLE};`,
    );
    void ctx.blockConcurrencyWhile(async () => {
      this.#status = (await ctx.storage.get<AgentStatus>(STATUS_KEY)) ?? NO_STATUS;
    });
  }

  #has(table: 'seen_attestations' | 'revoked_tokens' | 'finished_tasks', column: string, value: string): boolean {
    const now = Math.floor(nowSeconds());
    return (
      this.#sql.exec(`SELECT 1 FROM ${table} WHERE ${column} = ? AND expires_at >= ?`, value, now).toArray().length > 0
    );
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

  #markUsed(key: string, until: number): void {
    this.#sql.exec(
      'INSERT OR REPLACE INTO seen_attestations (key, expires_at) VALUES (?, ?)',
      key,
      until + CLOCK_MARGIN_SECONDS,
    );
  }

  /**
   * Admits a `/token` request, or says why not. An admitted attestation (and DPoP proof) is recorded as used
   * (durably) before this returns; a refused one is not consumed.
   */
  async admit(request: AdmitRequest): Promise<AdmitResult> {
    if (this.#status.suspended) return { admitted: false, reason: 'suspended' };
    if (this.#has('seen_attestations', 'key', request.replayKey)) return { admitted: false, reason: 'replayed' };
    const { dpop } = request;
    let dpopNonce: string | undefined;
    if (dpop?.requireNonce) {
      const nonces = this.#dpopNonces();
      dpopNonce = nonces.current;
      if (dpop.nonce === undefined || (dpop.nonce !== nonces.current && dpop.nonce !== nonces.previous))
        return { admitted: false, reason: 'dpop_nonce', dpopNonce };
    }
    if (dpop !== undefined && this.#has('seen_attestations', 'key', dpop.replayKey))
      return { admitted: false, reason: 'dpop_replayed' };
    if (this.#has('finished_tasks', 'task_id', request.taskId)) return { admitted: false, reason: 'task_finished' };
    const retryAfter = this.#takeFromBucket(request.rateLimit);
    if (retryAfter !== undefined) return { admitted: false, reason: 'rate_limited', retryAfter };
    this.#markUsed(request.replayKey, request.replayUntil);
    if (dpop !== undefined) this.#markUsed(dpop.replayKey, dpop.replayUntil);
    await this.#scheduleCleanup(
      Math.min(request.replayUntil, dpop?.replayUntil ?? Number.POSITIVE_INFINITY) + CLOCK_MARGIN_SECONDS,
    );
    const admitted = { admitted: true as const, ...(dpopNonce !== undefined && { dpopNonce }) };
    if (request.approval === undefined) return admitted;
    const record = this.#approval(request.approval.id);
    if (record === undefined) return { ...admitted, approval: { status: 'unknown' } };
    const polled = pollApproval(record, request.approval.terms, Math.floor(nowSeconds()));
    this.#saveApproval(polled.record);
    return { ...admitted, approval: polled.outcome };
  }

  #approval(id: string): ApprovalRecord | undefined {
    const row = this.#sql.exec<{ record: string }>('SELECT record FROM approvals WHERE id = ?', id).toArray()[0];
    return row === undefined ? undefined : (JSON.parse(row.record) as ApprovalRecord);
  }

  #saveApproval(record: ApprovalRecord): void {
    this.#sql.exec(
      'INSERT OR REPLACE INTO approvals (id, record, expires_at) VALUES (?, ?, ?)',
      record.id,
      JSON.stringify(record),
      record.expiresAt + APPROVAL_RETENTION_SECONDS,
    );
  }

  /** Records a pending approval and, when a webhook is configured, queues its announcement. */
  async createApproval(record: ApprovalRecord, message: PendingApprovalMessage | undefined): Promise<void> {
    this.#saveApproval(record);
    if (message !== undefined) queueNotification(this.#sql, message, record.createdAt, record.expiresAt);
    await this.#scheduleCleanup();
  }

  async approval(id: string): Promise<ApprovalRecord | undefined> {
    return this.#approval(id);
  }

  /** An approver's decision; the record as it stands after it. */
  async decideApproval(
    id: string,
    input: { approver: Approver; decision: 'approve' | 'deny'; reason: string },
  ): Promise<{ outcome: DecideOutcome | { decided: false; reason: 'unknown' }; record?: ApprovalRecord }> {
    const record = this.#approval(id);
    if (record === undefined) return { outcome: { decided: false, reason: 'unknown' } };
    const decided = decideApproval(record, input, Math.floor(nowSeconds()));
    this.#saveApproval(decided.record);
    return decided;
  }

  /** Puts a collected approval back to approved when no token came of the collection (a broker fault). */
  async releaseApproval(id: string): Promise<void> {
    const record = this.#approval(id);
    if (record?.status === 'collected') this.#saveApproval({ ...record, status: 'approved' });
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

  async status(): Promise<AgentStatus> {
    return this.#status;
  }

  /** Revokes one token until it would have expired anyway. */
  async revokeToken(jti: string, exp: number): Promise<void> {
    this.#sql.exec('INSERT OR REPLACE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)', jti, exp);
    await this.#scheduleCleanup();
  }

  /** Finishes a task: every token of it is dead, and no new one is issued for it. */
  async finishTask(taskId: string): Promise<void> {
    const until = Math.ceil(nowSeconds()) + FINISHED_TASK_RETENTION_SECONDS;
    this.#sql.exec('INSERT OR REPLACE INTO finished_tasks (task_id, expires_at) VALUES (?, ?)', taskId, until);
    await this.#scheduleCleanup();
  }

  async #setStatus(status: AgentStatus): Promise<AgentStatus> {
    await this.ctx.storage.put(STATUS_KEY, status);
    this.#status = status;
    return status;
  }

  /**
   * Revokes every token the agent holds now. The cut-off is rounded up to the next second (`iat` has
   * second precision), so a token minted by a request in flight during the revocation is dead too.
   */
  async revokeAll(by: string, reason: string): Promise<AgentStatus> {
    const now = nowSeconds();
    return this.#setStatus({
      ...this.#status,
      revokedBefore: Math.ceil(now + 0.001),
      lastChange: { action: 'revoke', by, reason, at: Math.floor(now) },
    });
  }

  /** The per-agent kill switch: refuses every `/token` and revokes every token held now. */
  async suspend(by: string, reason: string): Promise<AgentStatus> {
    const now = nowSeconds();
    return this.#setStatus({
      suspended: true,
      revokedBefore: Math.ceil(now + 0.001),
      lastChange: { action: 'suspend', by, reason, at: Math.floor(now) },
    });
  }

  /** Lifts a suspension; tokens revoked by it stay revoked. */
  async resume(by: string, reason: string): Promise<AgentStatus> {
    return this.#setStatus({
      ...this.#status,
      suspended: false,
      lastChange: { action: 'resume', by, reason, at: Math.floor(nowSeconds()) },
    });
  }

  /**
   * Sets the alarm to the earliest expiry. `added` is the expiry (epoch seconds) of a row just written:
   * when the alarm is already due no later, there is nothing to do, which spares `/token` a query and a
   * storage call per request.
   */
  async #scheduleCleanup(added?: number): Promise<void> {
    if (added !== undefined && typeof this.#alarmAt === 'number' && this.#alarmAt <= added * 1000) return;
    const next = this.#sql
      .exec<{ at: number | null }>(
        `SELECT MIN(at) AS at FROM (
           SELECT MIN(expires_at) AS at FROM seen_attestations
           UNION ALL SELECT MIN(expires_at) FROM revoked_tokens
           UNION ALL SELECT MIN(expires_at) FROM finished_tasks
           UNION ALL SELECT MIN(expires_at) FROM approvals
           UNION ALL SELECT MIN(next_at) FROM notifications)`,
      )
      .toArray()[0]?.at;
    const current = await this.ctx.storage.getAlarm();
    this.#alarmAt = current;
    if (next === null || next === undefined) return;
    if (current === null || current > next * 1000) {
      await this.ctx.storage.setAlarm(next * 1000);
      this.#alarmAt = next * 1000;
    }
  }

  /**
   * Delivers approval notifications that are due, and forgets what can no longer matter: used
   * attestations, revoked tokens, finished tasks and approvals past their retention.
   */
  override async alarm(): Promise<void> {
    this.#alarmAt = null;
    const now = Math.floor(nowSeconds());
    await deliverDue(this.#sql, this.env, now, (id) => {
      const record = this.#approval(id);
      return record !== undefined && approvalStatus(record, now) === 'pending';
    });
    for (const table of ['seen_attestations', 'revoked_tokens', 'finished_tasks', 'approvals']) {
      this.#sql.exec(`DELETE FROM ${table} WHERE expires_at < ?`, now);
    }
    await this.#scheduleCleanup();
  }
}
