/**
 * The cost model: what a Tessera run would be billed on Cloudflare, per token, from the broker's billing
 * meter (`GET /admin/meter`, `worker/durable/meter.ts`) read before and after the run, workerd's CPU per
 * token, and the bytes D1 keeps per record; priced at Cloudflare's list prices below.
 */
import { z } from 'zod';
import type { LocalBroker } from '../lib/local-broker';

/**
 * Cloudflare's list prices, Workers Paid, in US dollars per unit, read 2026-12-07 from the sources named.
 * The monthly allowances the plan includes (10 M requests, 30 M CPU ms, 1 M DO requests, 25 bn rows read,
 * 50 M rows written, 5 GB stored, ...) are left out: the figures are the marginal cost of tokens past them.
 */
export const PRICES = {
  /** https://developers.cloudflare.com/workers/platform/pricing/ (Standard): $0.30 per million requests. */
  workerRequest: 0.3 / 1e6,
  /** Same page: $0.02 per million CPU milliseconds. */
  workerCpuMs: 0.02 / 1e6,
  /** https://developers.cloudflare.com/durable-objects/platform/pricing/: $0.15 per million requests (RPC
   * method calls and alarm invocations each one). */
  doRequest: 0.15 / 1e6,
  /** Same page, SQLite storage backend: $0.001 per million rows read, $1.00 per million rows written,
   * $0.20 per GB-month stored. */
  doRowRead: 0.001 / 1e6,
  doRowWritten: 1.0 / 1e6,
  doStoredGbMonth: 0.2,
  /** https://developers.cloudflare.com/d1/platform/pricing/: $0.001 per million rows read, $1.00 per million
   * rows written (an index update is a row written), $0.75 per GB-month stored. */
  d1RowRead: 0.001 / 1e6,
  d1RowWritten: 1.0 / 1e6,
  d1StoredGbMonth: 0.75,
  /** https://developers.cloudflare.com/queues/platform/pricing/: $0.40 per million operations (each 64 KB
   * written, read or deleted). */
  queueOperation: 0.4 / 1e6,
  /** https://developers.cloudflare.com/r2/pricing/ (Standard storage): $4.50 per million class A operations,
   * $0.36 per million class B, $0.015 per GB-month stored. */
  r2ClassA: 4.5 / 1e6,
  r2ClassB: 0.36 / 1e6,
  r2StoredGbMonth: 0.015,
} as const;

/** When and where the prices were read. */
export const PRICES_READ = '2026-12-07';

const Counts = z.object({
  workerInvocations: z.number(),
  doRequests: z.number(),
  doAlarms: z.number(),
  doSqlRowsRead: z.number(),
  doSqlRowsWritten: z.number(),
  doKvRowsRead: z.number(),
  doKvRowsWritten: z.number(),
  d1Queries: z.number(),
  d1RowsRead: z.number(),
  d1RowsWritten: z.number(),
  d1QueriesWithoutMeta: z.number(),
  queueMessagesSent: z.number(),
  queueUnitsWritten: z.number(),
  queueUnitsRead: z.number(),
  r2ClassA: z.number(),
  r2ClassB: z.number(),
});

export type MeterCounts = z.infer<typeof Counts>;

/** The broker's billing meter; anything but a 200 with the counts is an error (the meter must be on). */
export async function readMeter(broker: LocalBroker, credential: string): Promise<MeterCounts> {
  const response = await fetch(`${broker.url}/admin/meter`, { headers: { authorization: `Bearer ${credential}` } });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`GET /admin/meter answered ${response.status}: ${body}`);
  return z.object({ counts: Counts }).parse(JSON.parse(body)).counts;
}

/** What D1 holds: its records, the granted `token.exchange` ones, and the database's size in bytes. */
export interface D1Holding {
  records: number;
  granted: number;
  bytes: number;
}

/**
 * D1's records and size, asked of Miniflare's D1 directly (not through the broker, so not metered). The size
 * is D1's own `meta.size_after` (the database file's bytes: tables, indexes and free pages); `PRAGMA
 * page_count` is not authorised in D1.
 */
export async function d1Holding(broker: LocalBroker): Promise<D1Holding> {
  const db = await broker.miniflare.getD1Database('AUDIT_DB');
  const { results, meta } = await db
    .prepare(
      `SELECT count(*) AS records, coalesce(sum(event = 'token.exchange' AND decision = 'granted'), 0) AS granted
       FROM audit_events`,
    )
    .all<{ records: number; granted: number }>();
  const [counted] = results;
  if (counted === undefined || typeof meta.size_after !== 'number') throw new Error('D1 did not say what it holds');
  return { records: counted.records, granted: counted.granted, bytes: meta.size_after };
}

/** Polls D1 until it holds `granted` granted records, for at most `deadlineMs`. */
export async function d1Reached(broker: LocalBroker, granted: number, deadlineMs: number): Promise<D1Holding> {
  const started = performance.now();
  for (;;) {
    const holding = await d1Holding(broker);
    if (holding.granted >= granted || performance.now() - started >= deadlineMs) return holding;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Billed operations per token. */
export interface OpsPerToken {
  workerRequests: number;
  cpuMs: number;
  doRequests: number;
  doAlarms: number;
  doRowsRead: number;
  doRowsWritten: number;
  d1Queries: number;
  d1RowsRead: number;
  d1RowsWritten: number;
  d1QueriesWithoutMeta: number;
  /** Queue operations: 64 KB units written, read and deleted (one delete per unit read). */
  queueOperations: number;
  r2ClassA: number;
  r2ClassB: number;
}

/** The priced items, in the order of the report. */
export const COST_ITEMS = [
  ['workerRequests', 'Worker requests'],
  ['cpuMs', 'CPU ms (all of workerd’s)'],
  ['doRequests', 'DO requests (RPC calls + alarms)'],
  ['doRowsRead', 'DO rows read'],
  ['doRowsWritten', 'DO rows written'],
  ['d1RowsRead', 'D1 rows read'],
  ['d1RowsWritten', 'D1 rows written'],
  ['queueOperations', 'Queue operations'],
  ['r2ClassA', 'R2 class A'],
  ['r2ClassB', 'R2 class B'],
] as const;

export type CostItem = (typeof COST_ITEMS)[number][0];

export interface CostFigures {
  /** Tokens issued in the metered window (the wake-up before the run and the run). */
  tokens: number;
  /** The meter's counts over the window: from the drained read before the wake-up to D1 holding every token's record. */
  counts: MeterCounts;
  perToken: OpsPerToken;
  /** Dollars per million tokens, by item, and in all. */
  dollarsPerMillion: Record<CostItem, number> & { total: number };
  /** What D1 keeps: bytes of database per record written in the window, records per token, and the storage
   * cost of a million tokens' records kept a month in D1 (or, at the same size, in R2). */
  storage: {
    bytesPerRecord: number;
    recordsPerToken: number;
    d1DollarsPerMillionMonth: number;
    r2DollarsPerMillionMonth: number;
  };
}

/** `after - before`, count by count. */
function difference(before: MeterCounts, after: MeterCounts): MeterCounts {
  const keys = Object.keys(after) as (keyof MeterCounts)[];
  return Object.fromEntries(keys.map((key) => [key, after[key] - before[key]])) as MeterCounts;
}

/** Bytes in a GB, as Cloudflare bills storage. */
const GB = 1e9;

/** The cost of the window between two meter reads (and two D1 holdings), over `tokens` and `cpuMsPerToken`. */
export function costFigures(
  meter: { before: MeterCounts; after: MeterCounts },
  d1: { before: D1Holding; after: D1Holding },
  tokens: number,
  cpuMsPerToken: number,
): CostFigures {
  const counts = difference(meter.before, meter.after);
  const per = (n: number) => n / tokens;
  const perToken: OpsPerToken = {
    workerRequests: per(counts.workerInvocations),
    cpuMs: cpuMsPerToken,
    doRequests: per(counts.doRequests + counts.doAlarms),
    doAlarms: per(counts.doAlarms),
    doRowsRead: per(counts.doSqlRowsRead + counts.doKvRowsRead),
    doRowsWritten: per(counts.doSqlRowsWritten + counts.doKvRowsWritten),
    d1Queries: per(counts.d1Queries),
    d1RowsRead: per(counts.d1RowsRead),
    d1RowsWritten: per(counts.d1RowsWritten),
    d1QueriesWithoutMeta: per(counts.d1QueriesWithoutMeta),
    queueOperations: per(counts.queueUnitsWritten + 2 * counts.queueUnitsRead),
    r2ClassA: per(counts.r2ClassA),
    r2ClassB: per(counts.r2ClassB),
  };
  const price: Record<CostItem, number> = {
    workerRequests: PRICES.workerRequest,
    cpuMs: PRICES.workerCpuMs,
    doRequests: PRICES.doRequest,
    doRowsRead: PRICES.doRowRead,
    doRowsWritten: PRICES.doRowWritten,
    d1RowsRead: PRICES.d1RowRead,
    d1RowsWritten: PRICES.d1RowWritten,
    queueOperations: PRICES.queueOperation,
    r2ClassA: PRICES.r2ClassA,
    r2ClassB: PRICES.r2ClassB,
  };
  const items = Object.fromEntries(COST_ITEMS.map(([key]) => [key, perToken[key] * price[key] * 1e6])) as Record<
    CostItem,
    number
  >;
  const total = Object.values(items).reduce((sum, dollars) => sum + dollars, 0);
  const records = d1.after.records - d1.before.records;
  const bytesPerRecord = records > 0 ? (d1.after.bytes - d1.before.bytes) / records : Number.NaN;
  const recordsPerToken = records / tokens;
  const gbPerMillion = (bytesPerRecord * recordsPerToken * 1e6) / GB;
  return {
    tokens,
    counts,
    perToken,
    dollarsPerMillion: { ...items, total },
    storage: {
      bytesPerRecord,
      recordsPerToken,
      d1DollarsPerMillionMonth: gbPerMillion * PRICES.d1StoredGbMonth,
      r2DollarsPerMillionMonth: gbPerMillion * PRICES.r2StoredGbMonth,
    },
  };
}
