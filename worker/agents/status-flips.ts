/**
 * The flips an agent's object owes the status lists (`status/status-list.ts`): every change that kills or
 * suspends tokens queues the entries it changes in `status_flips`, in the change's transaction, and the
 * object sends them (one call per shard) before the change answers. A flip is deleted only once its shard
 * holds it; one that could not be sent stays, the change answers 503 (it is committed: repeating it is
 * harmless), and the object's alarm sends it again. An eviction loses nothing: flips are stored first.
 */
import { withinDeadline } from '../durable/deadline';
import { type EntryStatus, parseListId, type StatusFlip, statusShardStub } from '../status/status-list';

/** A change waits this long for the lists; under the store deadline its caller gives the whole call. */
const SEND_DEADLINE_MS = 2000;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 60_000;

/** The status outbox of one agent's object, over its SQLite storage. */
export class StatusFlips {
  readonly #sql: SqlStorage;
  readonly #env: Env;
  /** Epoch ms of the next retry, when flips wait; 0 = as soon as the alarm can. */
  #retryAt: number | null;
  #retryMs = FIRST_RETRY_MS;

  constructor(sql: SqlStorage, env: Env) {
    this.#sql = sql;
    this.#env = env;
    // An object evicted with flips waiting sends them on its next alarm.
    this.#retryAt = this.#waiting() ? 0 : null;
  }

  /** Queues `status` for `entries`, in the caller's transaction. INVALID is final here too. */
  queue(entries: readonly { list: string; idx: number }[], status: EntryStatus): void {
    for (const { list, idx } of entries) {
      this.#sql.exec(
        `INSERT INTO status_flips (list, idx, status) VALUES (?1, ?2, ?3)
         ON CONFLICT (list, idx) DO UPDATE SET status = ?3 WHERE status_flips.status != 1`,
        list,
        idx,
        status,
      );
    }
  }

  /** When the alarm should send flips that wait (epoch ms), or null when none waits. */
  dueAt(): number | null {
    return this.#retryAt;
  }

  /**
   * Sends every flip that waits, one call per shard, and forgets those their shard took.
   *
   * @throws {Error} when a shard failed or did not answer: what it did not take waits for the alarm.
   */
  async send(): Promise<void> {
    const waiting = this.#sql.exec<StatusFlip>('SELECT list, idx, status FROM status_flips').toArray();
    if (waiting.length === 0) {
      this.#retryAt = null;
      return;
    }
    const byShard = new Map<number, StatusFlip[]>();
    for (const flip of waiting) {
      const shard = parseListId(flip.list)?.shard;
      if (shard === undefined) continue;
      const group = byShard.get(shard);
      if (group === undefined) byShard.set(shard, [flip]);
      else group.push(flip);
    }
    const sent = await Promise.allSettled(
      [...byShard].map(async ([shard, flips]) => {
        await withinDeadline(`status shard ${shard}`, statusShardStub(this.#env, shard).flip(flips), SEND_DEADLINE_MS);
        return flips;
      }),
    );
    for (const result of sent) {
      if (result.status !== 'fulfilled') continue;
      for (const { list, idx, status } of result.value) {
        // A flip queued again since it was read (a later change) stays for the next send.
        this.#sql.exec('DELETE FROM status_flips WHERE list = ? AND idx = ? AND status = ?', list, idx, status);
      }
    }
    const failed = sent.find((result) => result.status === 'rejected');
    if (failed === undefined && !this.#waiting()) {
      this.#retryAt = null;
      this.#retryMs = FIRST_RETRY_MS;
      return;
    }
    this.#retryAt = Date.now() + this.#retryMs;
    this.#retryMs = Math.min(MAX_RETRY_MS, this.#retryMs * 2);
    throw new Error('status lists: a shard did not take its flips', { cause: failed?.reason });
  }

  #waiting(): boolean {
    return this.#sql.exec('SELECT 1 FROM status_flips LIMIT 1').toArray().length > 0;
  }
}
