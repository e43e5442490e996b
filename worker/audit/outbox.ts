/**
 * A Durable Object's audit log. The object that decides (an agent's state, the kill switch, an intake shard)
 * commits the decision's record in its own storage, in the same transaction as the change it records, chained
 * to the record before it by hash; the record waits there until D1 holds it. Durable Object storage is
 * durable when the call that wrote it returns, so a record exists before anyone is told of its decision.
 *
 * Forwarding is the object alarm's work: {@link AuditOutbox.flush} sends the waiting records in order to the
 * writer, a batch at a time, and removes a batch only once the writer says D1 has committed it. A failed
 * batch stays and is sent again later (with backoff); D1 ignores a record it already holds.
 */
import {
  type ChainedRecord,
  type ChainHead,
  type DecidedRecord,
  EMPTY_CHAIN,
  type ForwardedRecord,
  linkRecord,
} from './record';

/** How long a record waits before its object forwards it: records of a busy object travel together. */
export const FLUSH_DELAY_MS = 250;
/** Records sent to the writer in one call. */
const MAX_BATCH = 500;
/** Backoff after a failed batch: 1 s, doubling, at most a minute. */
const retryDelay = (failures: number) => Math.min(60_000, 1000 * 2 ** Math.max(0, failures - 1));

export interface Backlog {
  chain: string;
  /** Records committed here and not yet in D1. */
  waiting: number;
  /** Epoch ms at which the oldest and the newest of them were committed; null when none waits. */
  oldestAt: number | null;
  newestAt: number | null;
  /** Failed batches in a row, and the last failure's message. */
  failures: number;
  lastError: string | null;
}

/** Sends records to D1; resolves only once D1 has committed them all. */
export type RecordWriter = (records: ForwardedRecord[]) => Promise<void>;

/** The `chain_hash` of a record as the outbox keeps it (JSON). */
const chainHashOf = (record: string) => (JSON.parse(record) as ChainedRecord).chainHash;

const TABLES = `CREATE TABLE IF NOT EXISTS audit_outbox (
    chain_seq INTEGER PRIMARY KEY, record TEXT NOT NULL, committed_at INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS audit_chain (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL)`;

export class AuditOutbox {
  readonly chain: string;
  readonly #sql: SqlStorage;
  #head: ChainHead;
  #oldestAt: number | null;
  #failures = 0;
  #retryAt = 0;
  #lastError: string | null = null;
  #flushing: Promise<void> | undefined;

  constructor(sql: SqlStorage, chain: string) {
    this.chain = chain;
    this.#sql = sql;
    sql.exec(TABLES);
    this.#head = this.#loadHead();
    this.#oldestAt = this.#oldest();
  }

  /**
   * The chain's head: its newest waiting record, or the last one D1 holds when none waits. Objects from before
   * the head was read this way stored it as the `head` mark, which counts while it is the newest.
   */
  #loadHead(): ChainHead {
    const newest = this.#sql
      .exec<{ seq: number; record: string }>(
        'SELECT chain_seq AS seq, record FROM audit_outbox ORDER BY chain_seq DESC LIMIT 1',
      )
      .toArray()[0];
    const marks = [this.#mark('acked'), this.#mark('head')];
    if (newest !== undefined) marks.push({ seq: newest.seq, hash: chainHashOf(newest.record) });
    return marks.reduce((a, b) => (b.seq > a.seq ? b : a));
  }

  #mark(name: 'head' | 'acked'): ChainHead {
    const row = this.#sql
      .exec<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_chain WHERE name = ?', name)
      .toArray()[0];
    return row === undefined ? EMPTY_CHAIN : { seq: row.seq, hash: row.hash };
  }

  #setMark(name: 'acked', mark: ChainHead): void {
    this.#sql.exec('INSERT OR REPLACE INTO audit_chain (name, seq, hash) VALUES (?, ?, ?)', name, mark.seq, mark.hash);
  }

  #oldest(): number | null {
    return this.#sql.exec<{ at: number | null }>('SELECT MIN(committed_at) AS at FROM audit_outbox').one().at;
  }

  /**
   * Commits a record after the chain's head. Synchronous, so it lands in the same storage transaction as the
   * caller's other writes of the same step.
   */
  append(record: DecidedRecord): ChainedRecord {
    const chained = linkRecord(record, this.chain, this.#head);
    const now = Date.now();
    this.#sql.exec(
      'INSERT INTO audit_outbox (chain_seq, record, committed_at) VALUES (?, ?, ?)',
      chained.chainSeq,
      JSON.stringify(chained),
      now,
    );
    // The head needs no row of its own: the record just written is it.
    this.#head = { seq: chained.chainSeq, hash: chained.chainHash };
    this.#oldestAt ??= now;
    return chained;
  }

  /** The last record committed here, and the last one D1 is known to hold. */
  heads(): { head: ChainHead; acked: ChainHead } {
    return { head: this.#head, acked: this.#mark('acked') };
  }

  backlog(): Backlog {
    const { n: waiting, newest } = this.#sql
      .exec<{ n: number; newest: number | null }>('SELECT COUNT(*) AS n, MAX(committed_at) AS newest FROM audit_outbox')
      .one();
    return {
      chain: this.chain,
      waiting,
      oldestAt: this.#oldestAt,
      newestAt: newest,
      failures: this.#failures,
      lastError: this.#lastError,
    };
  }

  /**
   * Tokens granted in records still waiting here, by token id or task: what D1 cannot tell yet, so an
   * admin's lookup there plus this one sees every token.
   */
  pendingGrants(filter: { jti?: string; taskId?: string }): { jti: string; exp: number; taskId: string | null }[] {
    return this.#sql
      .exec<{ jti: string; exp: number; task: string | null }>(
        `SELECT record ->> '$.tokenJti' AS jti, record ->> '$.tokenExp' AS exp, record ->> '$.taskId' AS task
         FROM audit_outbox
         WHERE record ->> '$.event' = 'token.exchange' AND record ->> '$.decision' = 'granted'
           AND (record ->> '$.tokenJti' = ? OR record ->> '$.taskId' = ?)`,
        filter.jti ?? null,
        filter.taskId ?? null,
      )
      .toArray()
      .map((row) => ({ jti: row.jti, exp: row.exp, taskId: row.task }));
  }

  /** When the object should next forward (epoch ms): a little after the oldest record, later after a failure. */
  flushAt(): number | null {
    if (this.#oldestAt === null) return null;
    return Math.max(this.#oldestAt + FLUSH_DELAY_MS, this.#retryAt);
  }

  /** Forwards (as {@link flush}) unless a failed batch's backoff has not run out yet: the alarm's way. */
  async flushDue(write: RecordWriter): Promise<boolean> {
    if (Date.now() < this.#retryAt) return false;
    return this.flush(write);
  }

  /**
   * Forwards every record committed before the call, in order, whatever the backoff. One forwarding at a time; a call made while
   * one runs waits for it and then forwards what is left.
   *
   * @returns whether everything committed before the call is now in D1 (false after a failed batch, which
   *   stays for the next attempt).
   */
  async flush(write: RecordWriter): Promise<boolean> {
    while (this.#flushing !== undefined) await this.#flushing.catch(() => undefined);
    const upTo = this.#head.seq;
    const run = this.#forward(write, upTo);
    this.#flushing = run;
    try {
      await run;
      return true;
    } catch {
      return false;
    } finally {
      this.#flushing = undefined;
    }
  }

  async #forward(write: RecordWriter, upTo: number): Promise<void> {
    for (;;) {
      // Sent as committed: the writer reads the JSON in D1's query, so nothing here parses it.
      const rows = this.#sql
        .exec<{ seq: number; id: string; record: string }>(
          `SELECT chain_seq AS seq, record ->> '$.id' AS id, record
           FROM audit_outbox WHERE chain_seq <= ? ORDER BY chain_seq LIMIT ?`,
          upTo,
          MAX_BATCH,
        )
        .toArray();
      const last = rows.at(-1);
      if (last === undefined) return;
      try {
        await write(rows.map(({ id, record }) => ({ id, json: record })));
      } catch (error) {
        this.#failures += 1;
        this.#retryAt = Date.now() + retryDelay(this.#failures);
        this.#lastError = error instanceof Error ? error.message : String(error);
        throw error;
      }
      this.#sql.exec('DELETE FROM audit_outbox WHERE chain_seq <= ?', last.seq);
      this.#setMark('acked', { seq: last.seq, hash: chainHashOf(last.record) });
      this.#failures = 0;
      this.#retryAt = 0;
      this.#lastError = null;
      this.#oldestAt = this.#oldest();
    }
  }
}
