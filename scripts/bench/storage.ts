/**
 * What a Tessera run costs its storage, read from the broker itself:
 *
 * - `GET /admin/audit/backlog` says how many audit records still wait to reach D1, in which chains, and how
 *   many D1 write queries the record path has made so far; read before and after a run, its difference over
 *   the tokens received is the **D1 write queries per token**, and polling it until no agent's chain waits
 *   is how the benchmark knows D1 holds the tokens' records before it checks them;
 * - the `Server-Timing` header of every `/token` answer has one entry per storage round trip the answer
 *   waited for in series (counted by `load.ts`);
 * - `audit_events.stored_at` (set by the audit writer as it sends the batch) minus the record's `at` is the **audit
 *   delay to D1**.
 *
 * A broker that lacks any of these makes the benchmark fail: the figures are part of what it measures.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { type LocalBroker, PROJECT_ROOT } from '../lib/local-broker';
import { quantile } from './load';

const Backlog = z.object({
  waiting: z.number().int().min(0),
  oldest_waiting_seconds: z.number().min(0).nullable(),
  chains: z.array(
    z.object({
      chain: z.string(),
      waiting: z.number().int().min(0),
      unconfirmed: z.number().int().min(0),
      oldest_waiting_seconds: z.number().min(0).nullable(),
      failures: z.number().int().min(0),
      last_error: z.string().nullable(),
    }),
  ),
  d1: z.object({
    write_queries: z.number().int().min(0),
    records_written: z.number().int().min(0),
    retried_deliveries: z.number().int().min(0),
    last_write_at: z.string().nullable(),
  }),
  dead_letters: z.object({ count: z.number().int().min(0), oldest_seconds: z.number().min(0).nullable() }),
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

/** The broker's audit backlog; anything but a 200 in the backlog's shape is an error. */
export async function readBacklog(broker: LocalBroker, credential: string): Promise<Backlog> {
  const response = await fetch(`${broker.url}/admin/audit/backlog`, {
    headers: { authorization: `Bearer ${credential}` },
  });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`GET /admin/audit/backlog answered ${response.status}: ${body}`);
  return Backlog.parse(JSON.parse(body));
}

/** Records waiting in agents' chains: the tokens' records (and refusals), not the admin calls' own. */
function agentsWaiting(backlog: Backlog): number {
  return backlog.chains
    .filter(({ chain }) => chain.startsWith('agent:'))
    .reduce((sum, { waiting }) => sum + waiting, 0);
}

export interface Drained {
  /** The read that found no agent's record waiting, or the last read before the deadline. */
  backlog: Backlog;
  /** Whether no agent's record waited any more before the deadline. */
  drained: boolean;
  /** Records still waiting in agents' chains at that read: 0 unless the deadline passed first. */
  waiting: number;
  /** From the first read to the one that found them drained (or to the deadline). */
  waitedMs: number;
}

/** How long D1's count of the agents' records must stand still before the queue counts as drained. */
const QUEUE_QUIET_MS = 1500;

/** Records of the agents' chains in D1: every `/token` decision's, and none of the backlog reads' own. */
async function agentRecords(broker: LocalBroker): Promise<number> {
  const db = await broker.miniflare.getD1Database('AUDIT_DB');
  const row = await db
    .prepare(`SELECT COUNT(*) AS n FROM audit_events WHERE chain >= 'agent:' AND chain < 'agent;'`)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/**
 * Polls until no agent's chain has a record waiting to be sent and D1's count of the agents' records has not
 * moved for {@link QUEUE_QUIET_MS} (longer than the queue's batch timeout, 1 s: every message sent has been
 * delivered), for at most `deadlineMs`.
 *
 * Each backlog read is itself an audited admin call, whose record goes to an intake shard's chain: the log as
 * a whole never stands still while it is being polled, so only the agents' chains (where every `/token`
 * decision is recorded) are waited for.
 */
export async function drainBacklog(broker: LocalBroker, credential: string, deadlineMs: number): Promise<Drained> {
  const started = performance.now();
  let counted = -1;
  let stillSince = started;
  for (;;) {
    const backlog = await readBacklog(broker, credential);
    const now = performance.now();
    const waitedMs = now - started;
    const waiting = agentsWaiting(backlog);
    const inD1 = await agentRecords(broker);
    if (waiting > 0 || inD1 !== counted) stillSince = now;
    counted = inD1;
    if (waiting === 0 && now - stillSince >= QUEUE_QUIET_MS) return { backlog, drained: true, waiting, waitedMs };
    if (waitedMs >= deadlineMs) return { backlog, drained: false, waiting, waitedMs };
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

/** `stored_at - at` over the granted `token.exchange` records of `tokenIds`. */
export async function auditDelay(broker: LocalBroker, tokenIds: readonly string[]): Promise<AuditDelay> {
  const db = await broker.miniflare.getD1Database('AUDIT_DB');
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
