/**
 * Step-up approval for humans: `GET /admin/approvals?status=pending` (paged: `approval-pages.ts`),
 * `GET /admin/approvals/{id}` and `POST /admin/approvals/{id}` `{ decision, reason }` (role `approver`). An
 * approval lives in its agent's Durable Object; the audit log says which approvals were opened.
 */
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { type AdminEnv, requireRole } from '../admin/auth';
import { type ApprovalRecord, type ApproverRefusal, agentOfApproval, approvalStatus } from '../core/approval';
import { notFound, publicEcho, refuse } from '../core/errors';
import { clip } from '../core/well-formed';
import type { AppEnv } from '../http/app-env';
import { recordRead, startAudit } from '../http/audit-trail';
import { NO_STORE } from '../http/errors';
import { readFields, readQuery } from '../http/read-body';
import { inventoryAgent } from '../policy/bundle';
import { loadedPolicy } from '../policy/loaded';
import { agentStore } from '../stores/agents';
import { approvalPage, ListQuery, listQueryProblem } from './approval-pages';

const Decision = z.object({ decision: z.enum(['approve', 'deny']), reason: z.string().trim().min(1).max(1000) });

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

function approvalJson(record: ApprovalRecord, now: number) {
  return {
    id: record.id,
    status: approvalStatus(record, now),
    agent: record.agent,
    owner: record.owner,
    audience: record.terms.audience,
    actions: record.terms.actions,
    needs_approval: record.requirement.actions,
    task: { id: record.terms.taskId, description: record.taskDescription, hash: record.terms.taskHash },
    justification: record.terms.justification,
    ttl: record.ttl,
    created_at: iso(record.createdAt),
    expires_at: iso(record.expiresAt),
    approvals_required: record.requirement.count,
    approver_groups: record.requirement.groups,
    four_eyes: record.requirement.fourEyes,
    rollback: record.requirement.rollback,
    decisions: record.decisions.map((d) => ({ ...d, at: iso(d.at) })),
  };
}

/**
 * The approval named in the path, from its agent's state; 404 when there is none. With `recordRead`, the
 * agent's object records the read with it.
 */
async function loadApproval(c: Context<AdminEnv>, recordRead: boolean): Promise<ApprovalRecord> {
  const id = c.req.param('id') ?? '';
  c.var.audit.target = `approval:${clip(id, 128)}`;
  const agent = agentOfApproval(id);
  if (agent === undefined || inventoryAgent(loadedPolicy().bundle, agent) === undefined)
    throw notFound('approval', { approval: clip(id, 128) });
  const draft = recordRead ? { ...c.var.audit, agent } : undefined;
  const record = await agentStore(c.env).approval(agent, id, draft);
  if (record === undefined) throw notFound('approval', { approval: id }, { recorded: recordRead });
  // The approval's API and actions too: what `usage_daily` counts an approver's decision under.
  const { audience, actions, taskId } = record.terms;
  Object.assign(c.var.audit, {
    agent: record.agent,
    owner: record.owner,
    taskId,
    audience,
    requestedActions: actions.join(' '),
  });
  return record;
}

const now = () => Math.floor(Date.now() / 1000);

/** Why this approver may not decide, in words an approver can act on (the rule is theirs to know). */
function approverRefusalText(rule: ApproverRefusal, record: ApprovalRecord): string {
  switch (rule) {
    case 'four_eyes':
      return "four-eyes: the agent's owner may not approve or deny its own agent's request";
    case 'not_in_group':
      return `this approval needs approvers in group ${record.requirement.groups.map(publicEcho).join(' and ')}`;
    case 'already_approved':
      return 'you have approved this request already: it needs another approver';
    case 'self_approval':
      return 'an agent may not decide its own request';
  }
}

export const approvalRoutes = new Hono<AppEnv>();

approvalRoutes.get(
  '/admin/approvals',
  startAudit('admin.approval.list'),
  requireRole('approver', 'admin', 'auditor'),
  async (c) => {
    const query = ListQuery.safeParse(readQuery(c.req.raw));
    if (!query.success) {
      const { field, description } = listQueryProblem(query.error);
      throw refuse('invalid_field', { field }, { description });
    }
    const at = now();
    const page = await approvalPage(c.env, query.data, at);
    const approvals = page.approvals.map((record) => approvalJson(record, at));
    const { status, agent } = query.data;
    c.var.audit.details = { status, ...(agent !== undefined && { agent }), count: approvals.length };
    // The console's approvals page polls this: sampled per approver (docs/audit-log.md).
    await recordRead(c);
    return c.json({ approvals, next_cursor: page.nextCursor, agents: page.agents }, 200, NO_STORE);
  },
);

approvalRoutes.get(
  '/admin/approvals/:id',
  startAudit('admin.approval.read'),
  requireRole('approver', 'admin', 'auditor'),
  async (c) => {
    const record = await loadApproval(c, true);
    return c.json(approvalJson(record, now()), 200, NO_STORE);
  },
);

approvalRoutes.post('/admin/approvals/:id', startAudit('admin.approval.decide'), requireRole('approver'), async (c) => {
  const record = await loadApproval(c, false);
  const body = Decision.safeParse(await readFields(c.req.raw));
  if (!body.success) {
    const field = body.error.issues[0]?.path.join('.') || 'body';
    throw refuse(
      'invalid_field',
      { field },
      { description: `invalid ${publicEcho(field)}: decision is approve or deny, with a reason` },
    );
  }
  const { decision, reason } = body.data;
  Object.assign(c.var.audit, { adminReason: reason, details: { decision } });
  const { id, groups } = c.var.admin;
  const decided = await agentStore(c.env).decideApproval(
    record.agent,
    record.id,
    { approver: { id, groups }, decision, reason },
    c.var.audit,
  );
  // Refused or not, the agent's object has recorded the decision with its outcome.
  if (!decided.outcome.decided) {
    const why = decided.outcome.reason;
    const recorded = { recorded: true };
    if (why === 'unknown') throw notFound('approval', { approval: record.id }, recorded);
    if (why === 'not_pending')
      throw refuse('approval_not_pending', { status: approvalStatus(record, now()) }, recorded);
    throw refuse(
      'approver_not_allowed',
      { rule: why, requirement: record.requirement },
      { ...recorded, description: approverRefusalText(why, record), body: { rule: why } },
    );
  }
  return c.json(approvalJson(decided.record ?? record, now()), 200, NO_STORE);
});
