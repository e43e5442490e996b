/**
 * Per-agent durable state, one object per agent id: attestation replay protection now; revocation,
 * suspension and rate limits join it so that one RPC (`admit`) answers everything `/token` needs to know.
 */
import { DurableObject } from 'cloudflare:workers';

export interface AdmitRequest {
  /** Issuer and `jti` of the attestation: accepted once. */
  replayKey: string;
  /** Epoch seconds until which the key must be remembered. */
  replayUntil: number;
}

export type AdmitResult = { admitted: true } | { admitted: false; reason: 'replayed' };

/**
 * Extra seconds a used attestation is remembered past `replayUntil`: the worker verified it before this
 * call, on a clock that may differ a little from this object's.
 */
const CLOCK_MARGIN_SECONDS = 60;

export class AgentState extends DurableObject<Env> {
  readonly #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec(
      `CREATE TABLE IF NOT EXISTS seen_attestations (
         key TEXT PRIMARY KEY,
         expires_at INTEGER NOT NULL
       );
       CREATE INDEX IF NOT EXISTS seen_attestations_expiry ON seen_attestations (expires_at);`,
    );
  }

  /**
   * Records an attestation as used, or refuses it as a replay. The write is durable before this returns,
   * and survives the object being evicted or restarted.
   */
  async admit(request: AdmitRequest): Promise<AdmitResult> {
    const now = Math.floor(Date.now() / 1000);
    const seen = this.#sql
      .exec<{ expires_at: number }>('SELECT expires_at FROM seen_attestations WHERE key = ?', request.replayKey)
      .toArray()[0];
    if (seen !== undefined && seen.expires_at >= now) return { admitted: false, reason: 'replayed' };
    this.#sql.exec(
      'INSERT OR REPLACE INTO seen_attestations (key, expires_at) VALUES (?, ?)',
      request.replayKey,
      request.replayUntil + CLOCK_MARGIN_SECONDS,
    );
    await this.#scheduleCleanup();
    return { admitted: true };
  }

  async #scheduleCleanup(): Promise<void> {
    const next = this.#sql
      .exec<{ at: number | null }>('SELECT MIN(expires_at) AS at FROM seen_attestations')
      .toArray()[0]?.at;
    if (next === null || next === undefined) return;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > next * 1000) await this.ctx.storage.setAlarm(next * 1000);
  }

  /** Forgets attestations past their retention; they would be refused as expired or too old anyway. */
  override async alarm(): Promise<void> {
    this.#sql.exec('DELETE FROM seen_attestations WHERE expires_at < ?', Math.floor(Date.now() / 1000));
    await this.#scheduleCleanup();
  }
}
