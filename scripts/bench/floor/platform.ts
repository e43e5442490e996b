/**
 * The benchmark's platform floor: the least a correct broker on Workers does for a token. It verifies the
 * attestation, makes one Durable Object call that durably records the attestation's `jti` (refusing one
 * already recorded), and signs. Single use needs that durable write before the answer, and on Workers the
 * one place to make it consistently is a Durable Object; everything else Tessera does (policy, revocation
 * state, rate limit, kill switch, audit) must fit in the difference between this floor and Tessera.
 */
import { DurableObject } from 'cloudflare:workers';
import { type FloorEnv, issueToken, refusal, verifyExchange } from './exchange';

interface PlatformFloorEnv extends FloorEnv {
  REPLAY_MARKS: DurableObjectNamespace<ReplayMarks>;
}

/** One object per agent (SQLite-backed): the `jti`s it has used, each kept until its attestation expires. */
export class ReplayMarks extends DurableObject<PlatformFloorEnv> {
  readonly #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: PlatformFloorEnv) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    // The expiry index is what lets expired marks be deleted (by an alarm, off the path): without it the
    // table grows forever, which no correct broker can afford.
    this.#sql.exec(
      `CREATE TABLE IF NOT EXISTS replay_marks (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
       CREATE INDEX IF NOT EXISTS replay_marks_expiry ON replay_marks (expires_at);`,
    );
  }

  /** Records `jti` until `expiresAt` (epoch seconds); false if it was already recorded. Durable on return. */
  mark(jti: string, expiresAt: number): boolean {
    const inserted = this.#sql.exec(
      'INSERT INTO replay_marks (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING jti',
      jti,
      expiresAt,
    );
    return inserted.toArray().length === 1;
  }
}

export default {
  async fetch(request: Request, env: PlatformFloorEnv): Promise<Response> {
    const exchange = await verifyExchange(request, env);
    if (exchange instanceof Response) return exchange;
    let fresh: boolean;
    try {
      fresh = await env.REPLAY_MARKS.get(env.REPLAY_MARKS.idFromName(exchange.agent)).mark(exchange.jti, exchange.exp);
    } catch {
      return refusal('temporarily_unavailable', 503);
    }
    return fresh ? issueToken(exchange, env) : refusal('invalid_grant');
  },
};
