/**
 * What kills an agent's tokens: its status (suspended, revoked before a second, who changed it last), tokens
 * revoked one by one, and finished tasks. Every change is written to the object's storage in the caller's
 * transaction, with the change's record, so once it has answered it survives an eviction.
 */
import type { Expiry } from './expiry';
import type { ReplayMarks } from './replay-marks';

/** How long a finished task is remembered: its tokens are dead, and its id is not issued again. */
const FINISHED_TASK_RETENTION_SECONDS = 24 * 3600;
/**
 * A revocation of every token also revokes, one by one, the tokens admitted this long before it: their
 * `iat` may fall in the revocation's own second (or, with clocks a little apart, the next), which
 * revoked-before alone cannot tell apart from a token asked for after the revocation answered.
 */
const RECENT_ADMISSIONS_MS = 5000;

/** An agent's status, as admins change it. */
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

/** An admin's change of an agent's status. */
export type StatusAction = 'revoke' | 'suspend' | 'resume';

/** What introspection knows of a token of the agent. */
export interface TokenRef {
  jti: string;
  taskId: string;
  iat: number;
}

/** Whether a token is alive as far as the agent's object goes, and if not, why. */
export type TokenStatus =
  | { active: true }
  | { active: false; reason: 'revoked' | 'revoked_before' | 'suspended' | 'task_finished' };

const LEGACY_STATUS_KEY = 'status';
const NO_STATUS: AgentStatus = { suspended: false, revokedBefore: null, lastChange: null };

/** The revocations of one agent's object, over its storage; the status is kept in memory too. */
export class Revocations {
  readonly #sql: SqlStorage;
  readonly #expiry: Expiry;
  readonly #marks: ReplayMarks;
  #status: AgentStatus = NO_STATUS;

  /** Loads the status: from SQL, or for objects from before it moved there, from its key-value key. */
  constructor(ctx: DurableObjectState, expiry: Expiry, marks: ReplayMarks) {
    this.#sql = ctx.storage.sql;
    this.#expiry = expiry;
    this.#marks = marks;
    const stored = this.#sql.exec<{ status: string }>('SELECT status FROM agent_status').toArray()[0];
    if (stored !== undefined) this.#status = JSON.parse(stored.status) as AgentStatus;
    else
      void ctx.blockConcurrencyWhile(async () => {
        this.#status = (await ctx.storage.get<AgentStatus>(LEGACY_STATUS_KEY)) ?? NO_STATUS;
      });
  }

  /** The agent's status now. */
  get status(): AgentStatus {
    return this.#status;
  }

  /** Whether a token of this agent is still alive at `now` (epoch seconds). */
  tokenStatus(token: TokenRef, now: number): TokenStatus {
    if (this.#status.suspended) return { active: false, reason: 'suspended' };
    if (this.#status.revokedBefore !== null && token.iat < this.#status.revokedBefore) {
      return { active: false, reason: 'revoked_before' };
    }
    if (this.revoked(token.jti, now)) return { active: false, reason: 'revoked' };
    if (this.#has('finished_tasks', 'task_id', token.taskId, now)) return { active: false, reason: 'task_finished' };
    return { active: true };
  }

  /** Whether token `jti` is revoked at `now` (epoch seconds). */
  revoked(jti: string, now: number): boolean {
    return this.#has('revoked_tokens', 'jti', jti, now);
  }

  /** Revokes one token until `exp` (epoch seconds), when it would have expired anyway. */
  revoke(jti: string, exp: number): void {
    this.#sql.exec('INSERT OR REPLACE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)', jti, exp);
    this.#expiry.note(exp);
  }

  /** Finishes a task at `now` (epoch seconds): its tokens are dead, and no new one is issued for it. */
  finishTask(taskId: string, now: number): void {
    const until = Math.ceil(now) + FINISHED_TASK_RETENTION_SECONDS;
    this.#sql.exec('INSERT OR REPLACE INTO finished_tasks (task_id, expires_at) VALUES (?, ?)', taskId, until);
    this.#expiry.note(until);
  }

  /**
   * An admin's change at `nowMs` (epoch ms). `revoke` kills every token the agent holds now, those issued
   * before this second by `iat` and those admitted in the last {@link RECENT_ADMISSIONS_MS} one by one; with
   * `suspend` it also refuses every later `/token`, in the same write, so no token is admitted after it (the
   * action for a compromised agent). `suspend` alone kills nothing: it refuses every `/token` and holds every
   * token inactive until `resume`, which gives back the tokens that nothing else killed.
   */
  change(action: StatusAction, by: string, reason: string, nowMs: number, { suspend = false } = {}): AgentStatus {
    const lastChange = { action, by, reason, at: Math.floor(nowMs / 1000) };
    const status: AgentStatus =
      action === 'revoke'
        ? { suspended: suspend || this.#status.suspended, revokedBefore: this.#revokeAllNow(nowMs), lastChange }
        : { ...this.#status, suspended: action === 'suspend', lastChange };
    this.#sql.exec('INSERT OR REPLACE INTO agent_status (id, status) VALUES (1, ?)', JSON.stringify(status));
    this.#status = status;
    return status;
  }

  #revokeAllNow(nowMs: number): number {
    for (const token of this.#marks.admittedSince(nowMs - RECENT_ADMISSIONS_MS)) this.revoke(token.jti, token.exp);
    return Math.floor(nowMs / 1000);
  }

  #has(table: 'revoked_tokens' | 'finished_tasks', column: string, value: string, now: number): boolean {
    return (
      this.#sql.exec(`SELECT 1 FROM ${table} WHERE ${column} = ? AND expires_at >= ?`, value, now).toArray().length > 0
    );
  }
}
