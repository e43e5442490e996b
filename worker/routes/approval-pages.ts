/**
 * The pages of `GET /admin/approvals`: the approvals opened in the window, oldest first, found through their
 * audit records in D1 (the partial index `audit_events_approvals_opened`) and read from their agents' objects,
 * behind an opaque keyset cursor; and, per agent, how many approvals it has in the status asked for, so that
 * one agent's flood never hides another agent's request.
 */
import { base64url } from 'jose';
import { z } from 'zod';
import type { OpenedApproval } from '../audit/query';
import { type ApprovalRecord, type ApprovalStatus, agentOfApproval, approvalStatus } from '../core/approval';
import { publicEcho } from '../core/errors';
import { inventoryAgent } from '../policy/bundle';
import { loadedPolicy } from '../policy/loaded';
import { type AgentStore, agentStore } from '../stores/agents';
import { auditDb } from '../stores/audit-log';

export const STATUSES = ['pending', 'approved', 'denied', 'expired', 'collected'] as const;
export const PAGE_DEFAULT = 50;
export const PAGE_MAX = 200;
/**
 * Batches of `limit` audit rows one page reads at most. A page of a rare status (most approvals of the window
 * in another) may so come back short, even empty, with a `next_cursor`: the walk goes on from where it stopped.
 */
const SCAN_BATCHES = 5;
/** Decided approvals stay readable this long after their expiry (as in the agent's state). */
const RETENTION_SECONDS = 24 * 3600;
/** An approval's record is timed at its request, a moment before the approval was opened. */
const OPENING_SLACK_SECONDS = 60;

const CURSOR_PREFIX = 'approvals:';
const CURSOR_SEQ = /^[1-9][0-9]{0,14}$/;

/** The cursor after the audit record `seq`: opaque to clients, who only send back what they were given. */
function encodeCursor(seq: number): string {
  return base64url.encode(`${CURSOR_PREFIX}${seq}`);
}

/** The audit `seq` a cursor continues after, or undefined for anything this listing did not hand out. */
function decodeCursor(cursor: string): number | undefined {
  let text: string;
  try {
    text = new TextDecoder().decode(base64url.decode(cursor));
  } catch {
    return undefined;
  }
  if (!text.startsWith(CURSOR_PREFIX)) return undefined;
  const seq = text.slice(CURSOR_PREFIX.length);
  return CURSOR_SEQ.test(seq) ? Number(seq) : undefined;
}

export const ListQuery = z.strictObject({
  status: z.enum(STATUSES).default('pending'),
  agent: z.string().min(1).max(128).optional(),
  cursor: z
    .string()
    .max(64)
    .refine((cursor) => decodeCursor(cursor) !== undefined)
    .transform((cursor) => decodeCursor(cursor) as number)
    .optional(),
  limit: z
    .string()
    .regex(/^[0-9]{1,3}$/)
    .transform(Number)
    .pipe(z.number().int().min(1).max(PAGE_MAX))
    .default(PAGE_DEFAULT),
});
export type ListQuery = z.infer<typeof ListQuery>;

/** What each parameter must be, in our own words. A `Map`: the parameter comes from the request. */
const HINTS: ReadonlyMap<string, string> = new Map([
  ['status', `status is one of ${STATUSES.join(', ')}`],
  ['agent', 'agent is an agent id, 1-128 characters'],
  ['cursor', 'cursor is the next_cursor of the previous page, as it was given'],
  ['limit', `limit is a whole number from 1 to ${PAGE_MAX}`],
]);

/** The field and public text for a query that does not parse. */
export function listQueryProblem(error: z.ZodError): { field: string; description: string } {
  const [issue] = error.issues;
  if (issue?.code === 'unrecognized_keys') {
    const description = `unknown parameter ${publicEcho(issue.keys[0] ?? '')}: the parameters are ${[...HINTS.keys()].join(', ')}`;
    return { field: 'query', description };
  }
  const field = String(issue?.path[0] ?? 'query');
  return { field, description: `invalid ${publicEcho(field)}: ${HINTS.get(field) ?? 'see docs/api.md'}` };
}

export interface ApprovalPage {
  approvals: ApprovalRecord[];
  /** Where the next page starts; null when the walk has reached the newest approval opened. */
  nextCursor: string | null;
  /** Each agent with approvals in the status (of `agent` alone when the query names one), most first. */
  agents: { agent: string; count: number }[];
}

/** The approvals `opened` names, from their agents' objects: one call per agent, by id. */
async function readApprovals(
  store: AgentStore,
  opened: readonly OpenedApproval[],
): Promise<Map<string, ApprovalRecord>> {
  const byAgent = new Map<string, string[]>();
  for (const { id } of opened) {
    const agent = id === null ? undefined : agentOfApproval(id);
    if (id !== null && agent !== undefined) byAgent.set(agent, [...(byAgent.get(agent) ?? []), id]);
  }
  const read = await Promise.all([...byAgent].map(([agent, ids]) => store.approvalsOf(agent, ids)));
  return new Map(read.flat().map((record) => [record.id, record]));
}

/** One page of the approvals in `query.status` at `now` (epoch seconds), oldest opened first. */
async function pageOf(env: Env, query: ListQuery, sinceMs: number, now: number) {
  const db = auditDb(env);
  const store = agentStore(env);
  const approvals: ApprovalRecord[] = [];
  let after = query.cursor ?? 0;
  for (let batch = 0; batch < SCAN_BATCHES; batch += 1) {
    const opened = await db.approvalsOpened({ sinceMs, afterSeq: after, agent: query.agent, limit: query.limit });
    const records = await readApprovals(store, opened);
    for (const { seq, id } of opened) {
      const record = id === null ? undefined : records.get(id);
      if (record !== undefined && approvalStatus(record, now) === query.status) approvals.push(record);
      after = seq;
      if (approvals.length === query.limit) return { approvals, nextCursor: encodeCursor(after) };
    }
    if (opened.length < query.limit) return { approvals, nextCursor: null };
  }
  return { approvals, nextCursor: encodeCursor(after) };
}

/** How many approvals each agent with one opened since `sinceMs` has in `status`, as its object counts now. */
async function agentCounts(env: Env, query: ListQuery, sinceMs: number) {
  const { bundle } = loadedPolicy();
  const agents =
    query.agent === undefined
      ? await auditDb(env).agentsWithApprovals(sinceMs)
      : [query.agent].filter((agent) => inventoryAgent(bundle, agent) !== undefined);
  const store = agentStore(env);
  const counted = await Promise.all(
    agents.map(async (agent) => ({ agent, count: (await store.approvalCounts(agent))[query.status] })),
  );
  return counted
    .filter(({ count }) => count > 0)
    .sort((a, b) => b.count - a.count || (a.agent < b.agent ? -1 : a.agent > b.agent ? 1 : 0));
}

/**
 * A page of the approvals listing at `now` (epoch seconds), with each agent's count. A pending approval was
 * opened less than `approvals.expires_in` ago; one in any other status is kept a day past its expiry.
 */
export async function approvalPage(env: Env, query: ListQuery, now: number): Promise<ApprovalPage> {
  const { expiresIn } = loadedPolicy().bundle.settings.approvals;
  const window: Record<ApprovalStatus, number> = {
    pending: expiresIn + OPENING_SLACK_SECONDS,
    approved: expiresIn + OPENING_SLACK_SECONDS,
    denied: expiresIn + RETENTION_SECONDS,
    expired: expiresIn + RETENTION_SECONDS,
    collected: expiresIn + RETENTION_SECONDS,
  };
  const sinceMs = (now - window[query.status]) * 1000;
  const [page, agents] = await Promise.all([pageOf(env, query, sinceMs, now), agentCounts(env, query, sinceMs)]);
  return { ...page, agents };
}
