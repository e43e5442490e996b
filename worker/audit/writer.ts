/**
 * The `AuditWriter` object (one, `global`): where the chains' records meet on their way to D1. Objects call
 * {@link AuditWriter.write} from their alarms; the writer makes at most one D1 write per window, with
 * everything that arrived since the last, from however many objects, in one query, then answers every caller.
 * So D1 sees a write per window, not per record, whether the records come from one busy agent or a thousand
 * quiet ones; and a record that finds the writer idle is written at once.
 *
 * The insert is idempotent: a record whose id D1 already holds is skipped, never replaced (the append-only
 * triggers would refuse a replace anyway), so a batch sent twice after a lost answer adds nothing.
 * The writer keeps nothing a caller has not been told is committed: a failed write rejects its callers, who
 * keep their records and try again.
 */

import { MeteredObject } from '../durable/meter';
import { type ForwardedRecord, RECORD_FIELDS } from './record';

/**
 * The least time from one D1 write to the next, unless `AUDIT_WRITE_WINDOW_MS` says otherwise: at most four
 * writes a second, so at 200 tokens/s a query carries 50 records or more (D1 has one primary for writes), and a
 * busy agent's record, which may wait for the write after next, reaches D1 about half a second after its
 * decision at worst. A longer window makes fewer, longer queries: each holds D1 (one query at a time), and
 * locally workerd's one thread, for as long as its inserts take (500 ms: p99 of the one-agent benchmark
 * 46-51 ms, against 38-46 ms at 250 ms).
 */
const WRITE_WINDOW_MS = 250;

/** The window from `AUDIT_WRITE_WINDOW_MS` (0..1000 ms), or {@link WRITE_WINDOW_MS}. */
function writeWindowMs(env: Env): number {
  if (env.AUDIT_WRITE_WINDOW_MS === undefined) return WRITE_WINDOW_MS;
  const ms = Number(env.AUDIT_WRITE_WINDOW_MS);
  if (!Number.isInteger(ms) || ms < 0 || ms > 1000) throw new Error('AUDIT_WRITE_WINDOW_MS must be 0..1000 ms');
  return ms;
}
/** Bytes of records in one D1 query: far below D1's 2 MB limit on a bound value. */
const MAX_QUERY_BYTES = 1_000_000;

/**
 * One query, two bound parameters: the records as a JSON array, each as its object committed it (field names,
 * mapped to columns here), and the time the writer sends them (`stored_at`, on the Workers clock that also
 * stamped each decision's `at`); those already in D1 are skipped. Each record is parsed once, into SQLite's
 * binary JSON (materialised), and its fields read from that: read from the text, every field parsed the
 * record again, which took half of D1's time per record.
 */
const INSERT = `WITH r AS MATERIALIZED (SELECT key, jsonb(value) AS record FROM json_each(?1))
  INSERT INTO audit_events (${RECORD_FIELDS.map(([, column]) => column).join(', ')}, stored_at)
  SELECT ${RECORD_FIELDS.map(([field]) => `r.record ->> '$.${field}'`).join(', ')}, ?2
  FROM r
  WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.id = r.record ->> '$.id')
  ORDER BY r.key`;

export interface WriterStats {
  /** D1 write queries made, and the records they added (a redelivered record adds none). */
  writeQueries: number;
  recordsWritten: number;
  failedQueries: number;
  lastError: string | null;
  /** Epoch ms of the last successful write. */
  lastWriteAt: number | null;
}

/** A write's outcome: an answer, not an exception, since a D1 outage is expected and handled by the caller. */
export type WriteOutcome = { written: true } | { written: false; error: string };

interface Waiting {
  records: ForwardedRecord[];
  resolve: (outcome: WriteOutcome) => void;
}

const STATS_TABLE = `CREATE TABLE IF NOT EXISTS writer_stats (
  id INTEGER PRIMARY KEY CHECK (id = 1), write_queries INTEGER NOT NULL, records_written INTEGER NOT NULL,
  failed_queries INTEGER NOT NULL, last_error TEXT, last_write_at INTEGER)`;

/** Groups records into queries of at most {@link MAX_QUERY_BYTES}, first seen first, each id once. */
function queries(records: readonly ForwardedRecord[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  let batch: string[] = [];
  let bytes = 2;
  for (const record of records) {
    if (seen.has(record.id)) continue;
    seen.add(record.id);
    const { json } = record;
    if (batch.length > 0 && bytes + json.length + 1 > MAX_QUERY_BYTES) {
      out.push(`[${batch.join(',')}]`);
      batch = [];
      bytes = 2;
    }
    batch.push(json);
    bytes += json.length + 1;
  }
  if (batch.length > 0) out.push(`[${batch.join(',')}]`);
  return out;
}

export class AuditWriter extends MeteredObject {
  #waiting: Waiting[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing = false;
  /** When the last write started, on the monotonic clock (`performance.now()`). */
  #lastWriteAt = Number.NEGATIVE_INFINITY;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.ctx.storage.sql.exec(STATS_TABLE);
  }

  /**
   * Resolves once D1 has committed `records` (with whatever else arrived for the same write), or with the
   * error when it could not: the caller keeps them and sends them again.
   */
  write(records: ForwardedRecord[]): Promise<WriteOutcome> {
    return new Promise((resolve) => {
      this.#waiting.push({ records, resolve });
      this.#schedule();
    });
  }

  /** The next write, a window after the last one started (at once if that is past), unless one is due or running. */
  #schedule(): void {
    if (this.#timer !== undefined || this.#writing || this.#waiting.length === 0) return;
    const window = writeWindowMs(this.env);
    // Never more than a window, whatever the clock did since.
    const wait = Math.min(window, Math.max(0, this.#lastWriteAt + window - performance.now()));
    this.#timer = setTimeout(() => void this.#commit(), wait);
  }

  async #commit(): Promise<void> {
    const waiting = this.#waiting;
    this.#waiting = [];
    this.#timer = undefined;
    this.#writing = true;
    this.#lastWriteAt = performance.now();
    let added = 0;
    let made = 0;
    try {
      for (const json of queries(waiting.flatMap((call) => call.records))) {
        const result = await this.env.AUDIT_DB.prepare(INSERT).bind(json, Date.now()).run();
        made += 1;
        added += result.meta.changes;
      }
      this.#count({ writeQueries: made, recordsWritten: added, failedQueries: 0, lastError: null });
      for (const call of waiting) call.resolve({ written: true });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.#count({ writeQueries: made, recordsWritten: added, failedQueries: 1, lastError: message });
      for (const call of waiting) call.resolve({ written: false, error: `D1 write failed: ${message}` });
    } finally {
      this.#writing = false;
      this.#schedule();
    }
  }

  #count(delta: Omit<WriterStats, 'lastWriteAt'>): void {
    const wrote = delta.failedQueries === 0 ? Date.now() : null;
    this.ctx.storage.sql.exec(
      `INSERT INTO writer_stats (id, write_queries, records_written, failed_queries, last_error, last_write_at)
       VALUES (1, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET write_queries = write_queries + excluded.write_queries,
         records_written = records_written + excluded.records_written,
         failed_queries = failed_queries + excluded.failed_queries,
         last_error = CASE WHEN excluded.failed_queries > 0 THEN excluded.last_error ELSE last_error END,
         last_write_at = COALESCE(excluded.last_write_at, last_write_at)`,
      delta.writeQueries,
      delta.recordsWritten,
      delta.failedQueries,
      delta.lastError,
      wrote,
    );
  }

  /** What the writer has done since it first ran. */
  async stats(): Promise<WriterStats> {
    const row = this.ctx.storage.sql
      .exec<{
        write_queries: number;
        records_written: number;
        failed_queries: number;
        last_error: string | null;
        last_write_at: number | null;
      }>('SELECT * FROM writer_stats WHERE id = 1')
      .toArray()[0];
    return {
      writeQueries: row?.write_queries ?? 0,
      recordsWritten: row?.records_written ?? 0,
      failedQueries: row?.failed_queries ?? 0,
      lastError: row?.last_error ?? null,
      lastWriteAt: row?.last_write_at ?? null,
    };
  }
}
