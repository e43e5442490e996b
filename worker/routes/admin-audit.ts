/**
 * The audit log for admins and auditors: `GET /admin/audit` (D1, filtered and paged), `GET /admin/audit/verify`
 * (the seal chain and every decision-time chain) and `GET /admin/audit/backlog` (records committed in their
 * objects and not yet handed on, what the queue's consumer has written, and the dead letters).
 */
import { type Context, Hono } from 'hono';
import { type AdminEnv, requireRole } from '../admin/auth';
import { type ObjectHeads, verifyChain } from '../audit/chain';
import type { Backlog } from '../audit/outbox';
import { AuditQuery, auditQueryProblem, auditRecordJson } from '../audit/query';
import { agentChain } from '../audit/record';
import { refuse } from '../core/errors';
import type { AppEnv } from '../http/app-env';
import { startAudit } from '../http/audit-trail';
import { readQuery } from '../http/read-body';
import { loadedPolicy } from '../policy/loaded';
import { agentStore } from '../stores/agents';
import { auditDb, deadLetters, intakeChains, sealAuditLog, sealedHead } from '../stores/audit-log';
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

export const auditRoutes = new Hono<AppEnv>();

auditRoutes.get('/admin/audit/verify', startAudit('admin.audit.verify'), requireRole('admin', 'auditor'), async (c) => {
  // Seal what is new first; a seal that no longer matches its record stops the sealer, and the check
  // below then reports where, against the head anchored so far.
  const head = await sealAuditLog(c.env).catch(() => sealedHead(c.env));
  const all = chains(c.env);
  const heads = await callStore('audit_chains', () => inChunks(all, (chain) => chain.heads()), VERIFY_DEADLINE_MS);
  const objects = new Map(all.map((chain, i) => [chain.chain, heads[i] as ObjectHeads]));
  const report = await callStore('audit_log', () => verifyChain(auditDb(c.env).db, head, objects), VERIFY_DEADLINE_MS);
  c.var.audit.details = { valid: report.valid, records: report.records, problems: report.problems.length };
  return done(c, { ...report });
});

auditRoutes.get(
  '/admin/audit/backlog',
  startAudit('admin.audit.backlog'),
  requireRole('admin', 'auditor'),
  async (c) => {
    const all = chains(c.env);
    const [backlogs, writer, dead] = await Promise.all([
      callStore('audit_chains', () => inChunks(all, (chain) => chain.backlog()), VERIFY_DEADLINE_MS),
      auditDb(c.env).writerStats(),
      deadLetters(c.env),
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
