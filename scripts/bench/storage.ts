/**
 * What a Tessera run costs its storage, read from the broker itself:
 *
 * - `GET /admin/audit/backlog` says how many audit records still wait to reach D1 and how many D1 write
 *   queries the record path has made so far; read before and after a run, its difference over the tokens
 *   received is the **D1 write queries per token**, and polling it until nothing waits is how the benchmark
 *   knows D1 is complete before it checks the records;
 * - the `Server-Timing` header of every `/token` answer has one entry per storage round trip the answer
 *   waited for in series (counted by `load.ts`);
 * - `audit_events.stored_at` (set by the audit writer as it sends the batch) minus the record's `at` is the **audit
 *   delay to D1**.
 *
 * A broker that provides none of these (one that writes its records to D1 on the request path) gets
 * `undefined` from the functions here, and the report says `n/a`.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { type LocalBroker, PROJECT_ROOT } from '../lib/local-broker';
import { quantile } from './load';

const Backlog = z.object({
  waiting: z.number().int().min(0),
  oldest_waiting_seconds: z.number().min(0).nullable(),
  d1: z.object({ write_queries: z.number().int().min(0), records_written: z.number().int().min(0) }),
});

export type Backlog = z.infer<typeof Backlog>;

/** How often the backlog is asked while waiting for it to drain. */
const POLL_MS = 200;

/**
 * The demo admin's credential (`scripts/demo/admin-credentials.json`): the bench policy keeps
 * `policies/admins.yaml`, which declares it.
 */
export async function benchAdminCredential(): Promise<string> {
  const file = join(PROJECT_ROOT, 'scripts', 'demo', 'admin-credentials.json');
  const { admin } = JSON.parse(await readFile(file, 'utf8')) as { admin?: unknown };
  if (typeof admin !== 'string') throw new Error(`${file}: no admin credential`);
  return admin;
}

/** The broker's audit backlog, or undefined when it has no such endpoint (404). */
export async function readBacklog(broker: LocalBroker, credential: string): Promise<Backlog | undefined> {
  const response = await fetch(`${broker.url}/admin/audit/backlog`, {
    headers: { authorization: `Bearer ${credential}` },
  });
  const body = await response.text();
  if (response.status === 404) return undefined;
  if (response.status !== 200) throw new Error(`GET /admin/audit/backlog answered ${response.status}: ${body}`);
  return Backlog.parse(JSON.parse(body));
}

export interface Drained {
  /** The last backlog read: `waiting` is 0 unless the deadline passed first. */
  backlog: Backlog;
  /** Whether nothing waited any more before the deadline. */
  drained: boolean;
  /** From the first read to the one that found nothing waiting (or to the deadline). */
  waitedMs: number;
}

/**
 * Polls the backlog until no record waits for D1, for at most `deadlineMs`; undefined when the broker has
 * no backlog to ask (it writes D1 before answering, so D1 is complete already).
 */
export async function drainBacklog(
  broker: LocalBroker,
  credential: string,
  deadlineMs: number,
): Promise<Drained | undefined> {
  const started = performance.now();
  for (;;) {
    const backlog = await readBacklog(broker, credential);
    if (backlog === undefined) return undefined;
    const waitedMs = performance.now() - started;
    if (backlog.waiting === 0) return { backlog, drained: true, waitedMs };
    if (waitedMs >= deadlineMs) return { backlog, drained: false, waitedMs };
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

export interface AuditDelay {
  /** Granted `token.exchange` records of the run's tokens that carry `stored_at`. */
  records: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * `stored_at - at` over the granted `token.exchange` records of `tokenIds`; undefined when `audit_events`
 * has no `stored_at` column.
 */
export async function auditDelay(broker: LocalBroker, tokenIds: readonly string[]): Promise<AuditDelay | undefined> {
  const db = await broker.miniflare.getD1Database('AUDIT_DB');
  const column = await db
    .prepare(`SELECT 1 AS present FROM pragma_table_info('audit_events') WHERE name = 'stored_at'`)
    .first<{ present: number }>();
  if (column === null) return undefined;
  const { results } = await db
    .prepare(
      `SELECT token_jti AS jti, stored_at - at AS delay FROM audit_events
       WHERE event = 'token.exchange' AND decision = 'granted' AND stored_at IS NOT NULL`,
    )
    .all<{ jti: string | null; delay: number }>();
  const wanted = new Set(tokenIds);
  const ofRun: number[] = [];
  for (const { jti, delay } of results) if (jti !== null && wanted.has(jti)) ofRun.push(delay);
  const delays = Float64Array.from(ofRun).sort();
  return {
    records: delays.length,
    p50Ms: quantile(delays, 0.5),
    p99Ms: quantile(delays, 0.99),
    maxMs: delays.length > 0 ? (delays[delays.length - 1] ?? Number.NaN) : Number.NaN,
  };
}
