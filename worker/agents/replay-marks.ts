/**
 * What an agent's object remembers of the attestations and DPoP proofs it has accepted (`seen_attestations`):
 * each is accepted once, until it would be refused as too old anyway. An attestation remembers the token it
 * became, so a revocation of every token can revoke, one by one, those admitted just before it.
 */
import type { Admission, Grant } from '../core/exchange';
import type { ExpiringRows } from './expiry';

/**
 * Extra seconds a used attestation is remembered past `replayUntil`: the worker verified it before this
 * call, on a clock that may differ a little from this object's.
 */
const CLOCK_MARGIN_SECONDS = 60;

/** A token an admitted attestation became: its id, expiry (epoch seconds), task and status list entry. */
export interface AdmittedToken {
  jti: string;
  exp: number;
  taskId?: string;
  status?: { list: string; idx: number };
}

/** A live token's entry in its status list, as the row of its attestation keeps it. */
export type LiveEntry = {
  jti: string;
  list: string;
  idx: number;
  taskId: string | null;
  admittedMs: number;
};

/** What storage says of an exchange's attestation, DPoP proof and task. */
export interface Remembered {
  replayed: boolean;
  proofReplayed: boolean;
  taskFinished: boolean;
}

/** The replay marks of one agent's object, over its SQLite storage. */
export class ReplayMarks {
  readonly #rows: ExpiringRows;

  constructor(rows: ExpiringRows) {
    this.#rows = rows;
  }

  /**
   * What storage says of an exchange's attestation, DPoP proof and task at `now` (epoch seconds): one query
   * for the three, the exchange's only read, so it asks `finished_tasks` (`./revocations.ts`) too.
   */
  remembered(admission: Admission, now: number): Remembered {
    const row = this.#rows.sql
      .exec<{ replayed: number; proofReplayed: number; taskFinished: number }>(
        `SELECT EXISTS (SELECT 1 FROM seen_attestations WHERE key = ?1 AND expires_at >= ?4) AS replayed,
           EXISTS (SELECT 1 FROM seen_attestations WHERE key = ?2 AND expires_at >= ?4) AS proofReplayed,
           EXISTS (SELECT 1 FROM finished_tasks WHERE task_id = ?3 AND expires_at >= ?4) AS taskFinished`,
        admission.replayKey,
        admission.dpop?.replayKey ?? null,
        admission.taskId,
        now,
      )
      .one();
    return {
      replayed: row.replayed === 1,
      proofReplayed: row.proofReplayed === 1,
      taskFinished: row.taskFinished === 1,
    };
  }

  /** Whether `key` (an attestation's or a proof's) was used and is still remembered at `now` (epoch seconds). */
  seen(key: string, now: number): boolean {
    return (
      this.#rows.sql.exec('SELECT 1 FROM seen_attestations WHERE key = ? AND expires_at >= ?', key, now).toArray()
        .length > 0
    );
  }

  /**
   * Remembers a used attestation (with the token it became, if any) or DPoP proof until `until`; an
   * attestation whose token has a status list entry is kept as long as the token lives, for its flips.
   */
  markUsed(key: string, until: number, token?: AdmittedToken): void {
    // Kept while a flip of its token's entry may still matter: until the token expires.
    const expiresAt = Math.max(until, token?.status === undefined ? 0 : token.exp) + CLOCK_MARGIN_SECONDS;
    this.#rows.sql.exec(
      `INSERT OR REPLACE INTO seen_attestations
         (key, expires_at, token_jti, token_exp, admitted_ms, status_list, status_idx, task_id)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      key,
      expiresAt,
      token?.jti ?? null,
      token?.exp ?? null,
      token === undefined ? null : Date.now(),
      token?.status?.list ?? null,
      token?.status?.idx ?? null,
      token?.taskId ?? null,
    );
    this.#rows.expiry.note(expiresAt);
  }

  /** The attestation and DPoP proof of an admitted request, used up; with the token they became, if one. */
  consume(admission: Admission, token?: Grant): void {
    this.markUsed(
      admission.replayKey,
      admission.replayUntil,
      token === undefined
        ? undefined
        : {
            jti: token.tokenJti,
            exp: token.tokenExp,
            taskId: admission.taskId,
            ...(token.status !== undefined && { status: token.status }),
          },
    );
    if (admission.dpop !== undefined) this.markUsed(admission.dpop.replayKey, admission.dpop.replayUntil);
  }

  /**
   * The status entries of the tokens alive at `now` (epoch seconds) that `where` selects: all of them, one
   * token's, or one task's. The table holds only live tokens and attestations still in their replay window:
   * a scan, on a change, never on `/token`.
   */
  liveEntries(now: number, where: { jti?: string; taskId?: string } = {}): LiveEntry[] {
    return this.#rows.sql
      .exec<LiveEntry>(
        `SELECT token_jti AS jti, status_list AS list, status_idx AS idx, task_id AS taskId,
           admitted_ms AS admittedMs
         FROM seen_attestations
         WHERE status_list IS NOT NULL AND token_exp > ?1 AND (?2 IS NULL OR token_jti = ?2)
           AND (?3 IS NULL OR task_id = ?3)`,
        now,
        where.jti ?? null,
        where.taskId ?? null,
      )
      .toArray();
  }

  /** The tokens admitted since `sinceMs` (epoch ms), with their expiry (epoch seconds). */
  admittedSince(sinceMs: number): { jti: string; exp: number }[] {
    return this.#rows.sql
      .exec<{ jti: string; exp: number }>(
        'SELECT token_jti AS jti, token_exp AS exp FROM seen_attestations WHERE token_jti IS NOT NULL AND admitted_ms >= ?',
        sinceMs,
      )
      .toArray();
  }
}
