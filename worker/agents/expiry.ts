/**
 * When an agent's object forgets what can no longer matter: used attestations and proofs, revoked tokens,
 * finished tasks and approvals past their retention. The parts that write those rows note each row's expiry
 * here, so the object's one alarm is due by the earliest without reading a row for it.
 */
import { Earliest } from '../durable/earliest';

/** How long after a row expires it may still wait for the alarm that deletes it with the rows after it. */
const CLEANUP_SLACK_SECONDS = 60;
/** The tables whose rows carry an `expires_at` (epoch seconds). */
const EXPIRING_TABLES = ['seen_attestations', 'revoked_tokens', 'finished_tasks', 'approvals'] as const;

/** What a part that writes expiring rows works over: the object's SQL, and the expiry its rows note. */
export interface ExpiringRows {
  sql: SqlStorage;
  expiry: Expiry;
}

/** The earliest expiry among the rows stored, and the cleanup it makes due. */
export class Expiry {
  readonly #sql: SqlStorage;
  /** The earliest `expires_at` among the rows stored (epoch seconds): when cleanup is due. */
  readonly #earliest: Earliest;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
    this.#earliest = new Earliest(() => this.#read());
  }

  /** Notes a row that expires at `at` (epoch seconds), so that the cleanup is due by then. */
  note(at: number): void {
    this.#earliest.note(at);
  }

  /**
   * When the cleanup is due (epoch ms), null for never. Expired rows are forgotten a minute late at most, so
   * that one alarm forgets a minute's rows, not one each.
   */
  dueAt(): number | null {
    const { at } = this.#earliest;
    return at === null ? null : (at + CLEANUP_SLACK_SECONDS) * 1000;
  }

  /** Deletes the rows expired before `now` (epoch seconds), if any are; reads nothing otherwise. */
  forgetExpired(now: number): void {
    if (!this.#earliest.before(now)) return;
    for (const table of EXPIRING_TABLES) this.#sql.exec(`DELETE FROM ${table} WHERE expires_at < ?`, now);
    this.#earliest.reread();
  }

  /** The earliest expiry among every table's rows (epoch seconds), read from storage. */
  #read(): number | null {
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
}
