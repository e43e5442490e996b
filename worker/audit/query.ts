/**
 * Reading the audit log: filters, newest first, cursor pagination (`GET /admin/audit`), and the lookups
 * admins need to act on what it shows (a token's agent, a task's agents).
 */
import { and, desc, eq, getTableColumns, gte, lt, lte, type SQL } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/d1';
import { z } from 'zod';
import { publicEcho } from '../core/errors';
import { type AuditEvent, auditEvents, auditSeals } from './schema';

export const AuditQuery = z.strictObject({
  agent: z.string().min(1).max(128).optional(),
  task: z.string().min(1).max(128).optional(),
  decision: z.enum(['granted', 'refused']).optional(),
  event: z.string().min(1).max(64).optional(),
  since: z.iso.datetime({ offset: true }).optional(),
  until: z.iso.datetime({ offset: true }).optional(),
  /** The `next_cursor` of the previous page. */
  cursor: z
    .string()
    .regex(/^[1-9][0-9]{0,14}$/)
    .optional(),
  limit: z
    .string()
    .regex(/^[0-9]{1,3}$/)
    .transform(Number)
    .pipe(z.number().int().min(1).max(500))
    .default(50),
});
export type AuditQuery = z.infer<typeof AuditQuery>;

const TIME = 'an ISO 8601 date and time with a UTC offset, such as 2026-12-01T09:30:00Z or 2026-12-01T10:30:00+01:00';
/** What each parameter must be, in our own words. A `Map`: the parameter comes from the request. */
export const QUERY_HINTS: ReadonlyMap<string, string> = new Map([
  ['agent', 'agent is an agent id, 1-128 characters'],
  ['task', 'task is a task id, 1-128 characters'],
  ['decision', 'decision is granted or refused'],
  ['event', 'event is an event name such as token.exchange, 1-64 characters'],
  ['since', `since is ${TIME}`],
  ['until', `until is ${TIME}`],
  ['cursor', 'cursor is the next_cursor of the previous page'],
  ['limit', 'limit is a whole number from 1 to 500'],
]);

/** The public text for a query that does not parse: the parameter, and the form it takes. */
export function auditQueryProblem(error: z.ZodError): string {
  const [issue] = error.issues;
  if (issue?.code === 'unrecognized_keys') {
    return `unknown parameter ${publicEcho(issue.keys[0] ?? '')}: the parameters are ${[...QUERY_HINTS.keys()].join(', ')}`;
  }
  const field = String(issue?.path[0] ?? '');
  return `invalid ${publicEcho(field)}: ${QUERY_HINTS.get(field) ?? 'see docs/api.md'}`;
}

const COLUMNS = Object.entries(getTableColumns(auditEvents)).map(([field, column]) => [field, column.name] as const);

/** A record as the API shows it: D1 column names, `detail` parsed, and its seal (null until sealed). */
export function auditRecordJson(
  record: AuditEvent,
  seal?: { prevHash: string; hash: string },
): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  for (const [field, column] of COLUMNS) json[column] = record[field as keyof AuditEvent];
  json.detail = record.detail === null ? null : JSON.parse(record.detail);
  json.prev_hash = seal?.prevHash ?? null;
  json.hash = seal?.hash ?? null;
  return json;
}

export interface AuditPage {
  records: AuditEvent[];
  /** The seals of the page's sealed records, by `seq`. */
  seals: Map<number, { prevHash: string; hash: string }>;
  nextCursor: string | null;
}

/**
 * One page of records matching `query`, newest first, their seals, and the next page's cursor (null at the
 * end). The seals come in the same query, by a join: a lookup by the page's `seq`s would bind one parameter
 * per record, and D1 allows 100 bound parameters per query.
 */
export async function listAudit(db: D1Database, query: AuditQuery): Promise<AuditPage> {
  const conditions: SQL[] = [];
  if (query.agent !== undefined) conditions.push(eq(auditEvents.agent, query.agent));
  if (query.task !== undefined) conditions.push(eq(auditEvents.taskId, query.task));
  if (query.decision !== undefined) conditions.push(eq(auditEvents.decision, query.decision));
  if (query.event !== undefined) conditions.push(eq(auditEvents.event, query.event));
  if (query.since !== undefined) conditions.push(gte(auditEvents.at, Date.parse(query.since)));
  if (query.until !== undefined) conditions.push(lte(auditEvents.at, Date.parse(query.until)));
  if (query.cursor !== undefined) conditions.push(lt(auditEvents.seq, Number(query.cursor)));
  const rows = await drizzle(db)
    .select({ record: auditEvents, seal: { prevHash: auditSeals.prevHash, hash: auditSeals.hash } })
    .from(auditEvents)
    .leftJoin(auditSeals, eq(auditSeals.seq, auditEvents.seq))
    .where(and(...conditions))
    .orderBy(desc(auditEvents.seq))
    .limit(query.limit + 1);
  const page = rows.slice(0, query.limit);
  const last = page.at(-1);
  const seals = new Map<number, { prevHash: string; hash: string }>();
  for (const { record, seal } of page) if (seal !== null) seals.set(record.seq, seal);
  return {
    records: page.map((row) => row.record),
    seals,
    nextCursor: rows.length > query.limit && last !== undefined ? String(last.record.seq) : null,
  };
}

/** The agent and expiry of an issued token, from its grant record. */
export async function findIssuedToken(
  db: D1Database,
  jti: string,
): Promise<{ agent: string; exp: number } | undefined> {
  const [row] = await drizzle(db)
    .select({ agent: auditEvents.agent, exp: auditEvents.tokenExp })
    .from(auditEvents)
    .where(
      and(eq(auditEvents.tokenJti, jti), eq(auditEvents.decision, 'granted'), eq(auditEvents.event, 'token.exchange')),
    )
    .limit(1);
  return row?.agent && row.exp !== null ? { agent: row.agent, exp: row.exp } : undefined;
}

/** Every agent that asked for a token for `taskId` (the agent is null only for callers not verified). */
export async function agentsOfTask(db: D1Database, taskId: string): Promise<string[]> {
  // Any decision, not only grants: a task whose token waits for an approval has no grant yet, and revoking it
  // must still reach the agent's object, so that the approval is never collected into a token.
  const rows = await drizzle(db)
    .selectDistinct({ agent: auditEvents.agent })
    .from(auditEvents)
    .where(and(eq(auditEvents.taskId, taskId), eq(auditEvents.event, 'token.exchange')));
  return rows.flatMap((row) => (row.agent === null ? [] : [row.agent]));
}

/** An approval opened, as its audit record places it: the record's `seq` (arrival order) and the approval's id. */
export interface OpenedApproval {
  seq: number;
  /** Null for a record whose target names no approval (none is written so; a page still counts it). */
  id: string | null;
}

/**
 * The records of approvals opened, through the partial index that holds only them: named, since without
 * statistics SQLite prefers the `(agent, seq)` or `at` index, and would read every record of an agent or of
 * the window. The condition is spelt as the index's is (a literal, not a parameter).
 */
const APPROVALS_OPENED = `FROM audit_events INDEXED BY audit_events_approvals_opened
  WHERE reason = 'approval_required' AND event = 'token.exchange'`;

/**
 * The approvals opened since `sinceMs` whose records arrived after `afterSeq`, oldest first (by `seq`), at most
 * `limit`, of `agent` alone when it is given: a page of the approvals listing, from their audit records.
 */
export async function approvalsOpened(
  db: D1Database,
  page: { sinceMs: number; afterSeq: number; agent: string | undefined; limit: number },
): Promise<OpenedApproval[]> {
  const { results } = await db
    .prepare(
      `SELECT seq, target ${APPROVALS_OPENED} AND seq > ?1 AND at >= ?2 AND (?3 IS NULL OR agent = ?3)
         ORDER BY seq LIMIT ?4`,
    )
    .bind(page.afterSeq, page.sinceMs, page.agent ?? null, page.limit)
    .all<{ seq: number; target: string | null }>();
  return results.map(({ seq, target }) => ({
    seq,
    id: target?.startsWith('approval:') ? target.slice('approval:'.length) : null,
  }));
}

/** The agents that opened an approval since `sinceMs`. */
export async function agentsWithApprovals(db: D1Database, sinceMs: number): Promise<string[]> {
  const { results } = await db
    .prepare(`SELECT DISTINCT agent ${APPROVALS_OPENED} AND at >= ?1 AND agent IS NOT NULL`)
    .bind(sinceMs)
    .all<{ agent: string }>();
  return results.map((row) => row.agent);
}

/** What the audit queue's consumer has written to D1 since it first ran. */
export interface WriterStats {
  writeQueries: number;
  recordsWritten: number;
  retriedDeliveries: number;
  /** Epoch ms of the last write; null before the first. */
  lastWriteAt: number | null;
}

export async function writerStats(db: D1Database): Promise<WriterStats> {
  const row = await db
    .prepare(
      `SELECT write_queries AS writeQueries, records_written AS recordsWritten,
         retried_deliveries AS retriedDeliveries, last_write_at AS lastWriteAt FROM audit_writer_stats WHERE id = 1`,
    )
    .first<WriterStats>();
  return row ?? { writeQueries: 0, recordsWritten: 0, retriedDeliveries: 0, lastWriteAt: null };
}

/** The hot window in D1 as it stands: its size, what it holds, and how fast it grows. */
export interface HotWindow {
  /** D1's size in bytes, as D1 reports it after a query. */
  sizeBytes: number;
  /** Records in D1 (by `seq`: only the oldest leave, so none are missing in between). */
  records: number;
  /** Epoch ms of the oldest record's decision; null when D1 holds none. */
  oldestAt: number | null;
  /** Records that reached D1 in the last hour. */
  lastHour: number;
}

export async function hotWindow(db: D1Database, now: number): Promise<HotWindow> {
  const span = await db
    .prepare(
      `SELECT (SELECT MIN(seq) FROM audit_events) AS first, (SELECT MAX(seq) FROM audit_events) AS last,
         (SELECT at FROM audit_events ORDER BY seq LIMIT 1) AS oldest,
         (SELECT COUNT(*) FROM audit_events WHERE at >= ?) AS last_hour`,
    )
    .bind(now - 3_600_000)
    .all<{ first: number | null; last: number | null; oldest: number | null; last_hour: number }>();
  const row = span.results[0];
  return {
    sizeBytes: span.meta.size_after,
    records: row?.first == null || row.last == null ? 0 : row.last - row.first + 1,
    oldestAt: row?.oldest ?? null,
    lastHour: row?.last_hour ?? 0,
  };
}
