/**
 * The audit log for admins and auditors: `GET /admin/audit` (D1, filtered and paged), `GET /admin/audit/verify`
 * (the seal chain and every decision-time chain) and `GET /admin/audit/backlog` (records committed in their
 * objects and not yet handed on, what the queue's consumer has written, and the dead letters).
 */
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { type AdminEnv, requireRole } from '../admin/auth';
import { type SegmentRow, verifyArchive } from '../audit/archive';
import { type ChainObjects, type ObjectHeads, verifyChain } from '../audit/chain';
import type { Backlog } from '../audit/outbox';
import { AuditQuery, auditQueryProblem, auditRecordJson, type HotWindow } from '../audit/query';
import { agentChain } from '../audit/record';
import { notFound, refuse } from '../core/errors';
import type { AppEnv } from '../http/app-env';
import { recordGranted, startAudit } from '../http/audit-trail';
import { NO_STORE } from '../http/errors';
import { readQuery } from '../http/read-body';
import { loadedPolicy } from '../policy/loaded';
import { agentStore } from '../stores/agents';
import { archiveBucket, deadLetters } from '../stores/audit-archive';
import { auditDb, intakeChains, sealAuditLog, sealedHead } from '../stores/audit-log';
import { callStore } from '../stores/call';
import { killSwitchChain } from '../stores/kill-switch';
import { done } from './admin';

/** A chain check may page through the whole log: it waits this long. */
const VERIFY_DEADLINE_MS = 30_000;
/** Chains asked at once for their heads or backlog. */
const CHAIN_CONCURRENCY = 50;

/** Every decision-time chain there is: each agent of the inventory, the kill switch, the intake shards. */
function chains(env: Env): { chain: string; backlog(): Promise<Backlog>; heads(): Promise<ObjectHeads> }[] {
  const agents = agentStore(env);
  const killSwitch = killSwitchChain(env);
  return [
    ...Object.keys(loadedPolicy().bundle.agents).map((id) => ({
      chain: agentChain(id),
      backlog: () => agents.backlog(id),
      heads: () => agents.heads(id),
    })),
    { chain: 'kill-switch', backlog: killSwitch.backlog, heads: killSwitch.heads },
    ...intakeChains(env),
  ];
}

/** Runs `work` over `items`, {@link CHAIN_CONCURRENCY} at a time. */
async function inChunks<T, R>(items: readonly T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += CHAIN_CONCURRENCY) {
    results.push(...(await Promise.all(items.slice(i, i + CHAIN_CONCURRENCY).map(work))));
  }
  return results;
}

/** A segment as admins see it: where it is, what it holds, and its place in the segment chain. */
function segmentJson(segment: SegmentRow) {
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    segment: segment.segment,
    key: segment.key,
    first_seq: segment.first_seq,
    last_seq: segment.last_seq,
    records: segment.records,
    bytes: segment.bytes,
    sha256: segment.sha256,
    first_at: iso(segment.first_at),
    last_at: iso(segment.last_at),
    heads_key: segment.heads_key,
    prev_hash: segment.prev_hash,
    hash: segment.hash,
    archived_at: iso(segment.archived_at),
  };
}

/** Warn when D1 would reach its budget within this many days at the last hour's rate. */
const BUDGET_WARNING_DAYS = 7;

/**
 * The hot window's health: how big, how full, and at the last hour's rate how many days until the budget
 * (the archive then moves records early, before they are `hot_days` old); a warning before that.
 */
function hotWindowJson(hot: HotWindow, now: number) {
  const { audit } = loadedPolicy().bundle.settings;
  const bytesPerRecord = hot.records === 0 ? null : hot.sizeBytes / hot.records;
  const bytesPerDay = bytesPerRecord === null ? 0 : bytesPerRecord * hot.lastHour * 24;
  const daysToBudget = bytesPerDay === 0 ? null : Math.max(0, (audit.hotMaxBytes - hot.sizeBytes) / bytesPerDay);
  const warning =
    hot.sizeBytes >= audit.hotMaxBytes
      ? 'D1 is over its budget: the oldest records move to the archive before hot_days'
      : daysToBudget !== null && daysToBudget < Math.min(BUDGET_WARNING_DAYS, audit.hotDays)
        ? `D1 reaches its budget in ${daysToBudget.toFixed(1)} days at the last hour's rate`
        : null;
  return {
    size_bytes: hot.sizeBytes,
    budget_bytes: audit.hotMaxBytes,
    hot_days: audit.hotDays,
    records: hot.records,
    bytes_per_record: bytesPerRecord === null ? null : Math.round(bytesPerRecord),
    oldest_at: hot.oldestAt === null ? null : new Date(hot.oldestAt).toISOString(),
    oldest_days: hot.oldestAt === null ? null : (now - hot.oldestAt) / 86_400_000,
    records_last_hour: hot.lastHour,
    days_to_budget: daysToBudget,
    warning,
  };
}

export const auditRoutes = new Hono<AppEnv>();

/** `?archive=full` reads every archive segment too; without it, the archive's segment chain is checked as D1 lists it. */
const VerifyQuery = z.strictObject({ archive: z.literal('full').optional() });

auditRoutes.get('/admin/audit/verify', startAudit('admin.audit.verify'), requireRole('admin', 'auditor'), async (c) => {
  const query = VerifyQuery.safeParse(readQuery(c.req.raw));
  if (!query.success)
    throw refuse('invalid_field', { issues: query.error.issues.length }, { description: 'archive is full or absent' });
  // Seal what is new first; a seal that no longer matches its record stops the sealer, and the check
  // below then reports where, against the head anchored so far.
  const head = await sealAuditLog(c.env).catch(() => sealedHead(c.env));
  const all = chains(c.env);
  const readHeads = () => callStore('audit_chains', () => inChunks(all, (chain) => chain.heads()), VERIFY_DEADLINE_MS);
  const before = await readHeads();
  const objects: ChainObjects = {
    acked: new Map(all.map((chain, i) => [chain.chain, (before[i] as ObjectHeads).acked])),
    heads: async () => {
      const after = await readHeads();
      return new Map(all.map((chain, i) => [chain.chain, (after[i] as ObjectHeads).head]));
    },
  };
  const db = auditDb(c.env);
  const segments = await db.segments();
  // The archive first: D1's seal chain and decision-time chains go on where it leaves them.
  const start = await callStore(
    'audit_archive',
    () => verifyArchive(segments, archiveBucket(c.env), query.data.archive === 'full'),
    VERIFY_DEADLINE_MS,
  );
  const report = await callStore('audit_log', () => verifyChain(db.db, head, objects, start), VERIFY_DEADLINE_MS);
  c.var.audit.details = {
    valid: report.valid,
    records: report.records,
    problems: report.problems.length,
    archive: query.data.archive ?? 'listed',
  };
  return done(c, { ...report });
});

auditRoutes.get(
  '/admin/audit/archive',
  startAudit('admin.audit.archive.list'),
  requireRole('admin', 'auditor'),
  async (c) => {
    const segments = await auditDb(c.env).segments();
    c.var.audit.details = { segments: segments.length };
    return done(c, { segments: segments.map(segmentJson) });
  },
);

auditRoutes.get(
  '/admin/audit/archive/:segment',
  startAudit('admin.audit.archive.read'),
  requireRole('admin', 'auditor'),
  async (c) => {
    const number = Number(c.req.param('segment'));
    const segment = Number.isSafeInteger(number)
      ? (await auditDb(c.env).segments()).find((s) => s.segment === number)
      : undefined;
    c.var.audit.target = `segment:${c.req.param('segment')}`;
    if (segment === undefined) throw notFound('segment', { segment: c.req.param('segment') });
    const bytes = await callStore('audit_archive', () => archiveBucket(c.env).get(segment.key));
    if (bytes === null) throw refuse('store_unavailable', { store: 'audit_archive', key: segment.key });
    await recordGranted(c);
    return new Response(bytes, {
      headers: { ...NO_STORE, 'content-type': 'application/gzip', 'x-tessera-segment-sha256': segment.sha256 },
    });
  },
);

auditRoutes.get(
  '/admin/audit/backlog',
  startAudit('admin.audit.backlog'),
  requireRole('admin', 'auditor'),
  async (c) => {
    const all = chains(c.env);
    const db = auditDb(c.env);
    const [backlogs, writer, dead, hot, segments] = await Promise.all([
      callStore('audit_chains', () => inChunks(all, (chain) => chain.backlog()), VERIFY_DEADLINE_MS),
      db.writerStats(),
      deadLetters(c.env),
      db.hotWindow(),
      db.segments(),
    ]);
    const now = Date.now();
    const waiting = backlogs.filter((backlog) => backlog.waiting > 0 || backlog.unconfirmed > 0);
    const oldest = Math.min(...waiting.map((backlog) => backlog.oldestAt ?? now));
    const age = (at: number | null) => (at === null ? null : Math.max(0, (now - at) / 1000));
    const total = waiting.reduce((sum, backlog) => sum + backlog.waiting, 0);
    c.var.audit.details = { waiting: total, dead_letters: dead.count };
    return done(c, {
      waiting: total,
      oldest_waiting_seconds: waiting.some((backlog) => backlog.oldestAt !== null) ? age(oldest) : null,
      chains: waiting.map((backlog) => ({
        chain: backlog.chain,
        waiting: backlog.waiting,
        unconfirmed: backlog.unconfirmed,
        oldest_waiting_seconds: age(backlog.oldestAt),
        failures: backlog.failures,
        last_error: backlog.lastError,
      })),
      d1: {
        write_queries: writer.writeQueries,
        records_written: writer.recordsWritten,
        retried_deliveries: writer.retriedDeliveries,
        last_write_at: writer.lastWriteAt === null ? null : new Date(writer.lastWriteAt).toISOString(),
      },
      dead_letters: {
        count: dead.count,
        oldest_seconds: age(dead.oldestAt),
      },
      hot_window: hotWindowJson(hot, now),
      archive: {
        segments: segments.length,
        records: segments.reduce((sum, segment) => sum + segment.records, 0),
        last_archived_at: segments.length === 0 ? null : new Date(segments.at(-1)?.archived_at ?? 0).toISOString(),
      },
    });
  },
);

auditRoutes.get(
  '/admin/audit',
  startAudit('admin.audit.read'),
  requireRole('admin', 'auditor'),
  async (c: Context<AdminEnv>) => {
    const query = AuditQuery.safeParse(readQuery(c.req.raw));
    if (!query.success) {
      throw refuse(
        'invalid_field',
        { issues: query.error.issues.length },
        { description: auditQueryProblem(query.error) },
      );
    }
    c.var.audit.details = { query: query.data };
    const page = await auditDb(c.env).list(query.data);
    return done(c, {
      records: page.records.map((record) => auditRecordJson(record, page.seals.get(record.seq))),
      next_cursor: page.nextCursor,
    });
  },
);
