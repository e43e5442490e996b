/**
 * The audit queue's consumer: where the chains' records meet on their way to D1. Every deciding object sends
 * its records to the `tessera-audit` queue, a batch per message; the Worker's queue handler gets up to 100
 * messages at a time, from however many objects, and writes all their records to D1 in one query. No object
 * sits between the chains and D1, and the queue scales out its consumers as the fleet grows.
 *
 * Delivery is at least once, so the insert is idempotent: a record whose id D1 already holds is skipped,
 * never replaced (the append-only triggers would refuse a replace anyway), and a record given twice in one
 * batch is written once. A batch D1 refuses is tried again one message at a time, so a record D1 keeps
 * refusing holds back only its own message: that one is retried with backoff and, after the queue's
 * `max_retries`, moves to the dead-letter queue, whose consumer keeps it in R2 (`dead-letters/`), where
 * admins see it. Nothing is acknowledged before D1 or R2 holds it.
 */
import { jsonArrays, RECORD_FIELDS } from './record';

/** Bytes of records in one D1 query: far below D1's 2 MB limit on a bound value. */
const MAX_QUERY_BYTES = 1_000_000;
/** Backoff for a message D1 refused: 1 s, doubling with each attempt, at most 5 minutes. */
export const retryDelaySeconds = (attempts: number) => Math.min(300, 2 ** Math.max(0, attempts - 1));
/** Where the dead-letter consumer keeps what D1 would not take. */
export const DEAD_LETTER_PREFIX = 'dead-letters/';

/**
 * One query, two bound parameters: the records as one JSON array, each as its object committed it (field
 * names, mapped to columns here), and the time the batch is written (`stored_at`, on the Workers clock that
 * also stamped each decision's `at`). Each record is parsed once, into SQLite's binary JSON (materialised),
 * and its fields read from that; a record given twice is taken once (its first copy), and one D1 holds
 * already, or the archive (at or before its chain's archived head), is skipped.
 */
const INSERT = `WITH r AS MATERIALIZED (
    SELECT MIN(key) AS key, jsonb(value) AS record FROM json_each(?1) GROUP BY value ->> '$.id')
  INSERT INTO audit_events (${RECORD_FIELDS.map(([, column]) => column).join(', ')}, stored_at)
  SELECT ${RECORD_FIELDS.map(([field]) => `r.record ->> '$.${field}'`).join(', ')}, ?2
  FROM r
  WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.id = r.record ->> '$.id')
    AND NOT EXISTS (SELECT 1 FROM audit_archive_heads h
      WHERE h.chain = r.record ->> '$.chain' AND h.seq >= r.record ->> '$.chainSeq')
  ORDER BY r.key`;

/**
 * What the writes add up to, kept in D1 beside the records and counted in the same batch (one transaction,
 * one round trip) as each write: `changes()` is the rows the insert just before it added.
 */
const COUNT = `INSERT INTO audit_writer_stats (id, write_queries, records_written, retried_deliveries, last_write_at)
  VALUES (1, 1, changes(), ?1, ?2)
  ON CONFLICT (id) DO UPDATE SET write_queries = write_queries + 1,
    records_written = records_written + excluded.records_written,
    retried_deliveries = retried_deliveries + excluded.retried_deliveries,
    last_write_at = excluded.last_write_at`;

/** A message's body: the JSON array of the records one object sent together, as it committed them. */
export type RecordBatch = string;

/** Joins message bodies (JSON arrays) into arrays of at most {@link MAX_QUERY_BYTES}, in order. */
function queries(bodies: readonly RecordBatch[]): string[] {
  // A body's records without its brackets: several messages' records in one array.
  const records = bodies.map((body) => body.slice(1, -1)).filter((records) => records.length > 0);
  return jsonArrays(records, MAX_QUERY_BYTES);
}

/**
 * Writes the records of `bodies` to D1, each query with its count, one D1 round trip per query; resolves
 * once D1 has committed them all. `retried` is how many of the deliveries had failed before.
 */
export async function writeRecords(db: D1Database, bodies: readonly RecordBatch[], retried = 0): Promise<void> {
  for (const json of queries(bodies)) {
    const storedAt = Date.now();
    await db.batch([db.prepare(INSERT).bind(json, storedAt), db.prepare(COUNT).bind(retried, storedAt)]);
    retried = 0;
  }
}

/**
 * The audit queue's handler: every message's records in as few queries as fit, acknowledged together; after
 * a failure, one message at a time, each acknowledged once D1 holds it or retried with backoff.
 */
export async function consumeAuditBatch(batch: MessageBatch<RecordBatch>, env: Env): Promise<void> {
  const retried = batch.messages.filter((message) => message.attempts > 1).length;
  try {
    await writeRecords(
      env.AUDIT_DB,
      batch.messages.map((message) => message.body),
      retried,
    );
    batch.ackAll();
    return;
  } catch (error) {
    console.warn(`audit batch of ${batch.messages.length} messages refused by D1, trying each alone: ${error}`);
  }
  for (const message of batch.messages) {
    try {
      await writeRecords(env.AUDIT_DB, [message.body], message.attempts > 1 ? 1 : 0);
      message.ack();
    } catch (error) {
      console.warn(`audit message ${message.id} refused by D1 (attempt ${message.attempts}): ${error}`);
      message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    }
  }
}

/**
 * The dead-letter queue's handler: each message D1 would not take, kept in R2 as it was sent, with when it
 * died and after how many attempts, under a key of its own (a redelivery overwrites it with the same body).
 */
export async function consumeDeadLetters(batch: MessageBatch<RecordBatch>, env: Env): Promise<void> {
  for (const message of batch.messages) {
    try {
      await env.AUDIT_ARCHIVE.put(`${DEAD_LETTER_PREFIX}${message.id}.json`, message.body, {
        httpMetadata: { contentType: 'application/json' },
        customMetadata: { deadAt: new Date().toISOString(), queuedAt: message.timestamp.toISOString() },
      });
      message.ack();
    } catch (error) {
      console.error(`dead letter ${message.id} could not be kept in R2: ${error}`);
      message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    }
  }
}
