/**
 * `/admin/*`: what the admin on call reaches for. Every call needs a role (see `admin/auth.ts`), is audited
 * with who, what, on which target and why, and answers only once the change is durable everywhere it
 * must be (all kill-switch shards; the agent's state).
 */
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { type AdminEnv, requireRole } from '../admin/auth';
import type { AgentStatus } from '../agents/agent-state';
import { verifyChain } from '../audit/chain';
import { AuditQuery, agentsOfTask, auditRecordJson, findIssuedToken, listAudit } from '../audit/query';
import { KILL_SWITCH_SHARDS, type KillSwitchReport } from '../control/kill-switch';
import { refuse } from '../core/errors';
import type { AppEnv } from '../http/app-env';
import { commitAudit, startAudit } from '../http/audit-trail';
import { NO_STORE } from '../http/errors';
import { limitBody } from '../http/limits';
import { readFields } from '../http/read-body';
import type { Agent } from '../policy/bundle';
import { loadedPolicy } from '../policy/loaded';
import { agentStub } from '../state/gates';
import { callStore } from '../state/store-call';

/** An engage or release waits this long for all shards before answering 503 (repeat it to complete it); a chain check as long. */
const KILL_SWITCH_DEADLINE_MS = 15_000;

const Reason = z.string().trim().min(1, 'a reason is required').max(1000);
const ReasonBody = z.object({ reason: Reason });
const KillSwitchBody = z.object({
  engaged: z.union([z.boolean(), z.enum(['true', 'false']).transform((value) => value === 'true')]),
  reason: Reason,
});

async function readBody<S extends z.ZodType>(c: Context<AdminEnv>, schema: S): Promise<z.output<S>> {
  const parsed = schema.safeParse(await readFields(c.req.raw));
  if (!parsed.success) {
    const [issue] = parsed.error.issues;
    const field = issue?.path.join('.') || 'body';
    throw refuse('invalid_field', { field }, { description: `invalid ${field}: ${issue?.message ?? 'invalid'}` });
  }
  return parsed.data;
}

/** Audits the action's target and reason, then answers with `body` once the record is committed. */
async function done(c: Context<AdminEnv>, body: Record<string, unknown>) {
  await commitAudit(c);
  return c.json(body, 200, NO_STORE);
}

function killSwitch(env: Env) {
  return env.KILL_SWITCH.get(env.KILL_SWITCH.idFromName('global'));
}

function killSwitchJson(report: KillSwitchReport) {
  return {
    engaged: report.engaged,
    reason: report.reason,
    by: report.by,
    at: report.at === null ? null : new Date(report.at * 1000).toISOString(),
    version: report.version,
    shards: report.shards,
  };
}

/** How an agent proves who it is: its own keys (by `kid`), or a trusted issuer and the subject it binds. */
function attestationJson(agent: Agent) {
  const { attestation } = agent;
  if (attestation.kind === 'self_signed')
    return { method: 'self_signed', keys: attestation.jwks.keys.map((key) => key.kid) };
  return { method: 'issuer', issuer: attestation.issuer, subject: attestation.subject, claims: attestation.claims };
}

function agentJson(agent: Agent, status: AgentStatus) {
  return {
    agent: agent.id,
    owner: agent.owner,
    description: agent.description,
    labels: agent.labels,
    attestation: attestationJson(agent),
    dpop_required: agent.requireDpop === true,
    suspended: status.suspended,
    revoked_before: status.revokedBefore === null ? null : new Date(status.revokedBefore * 1000).toISOString(),
    last_change:
      status.lastChange === null
        ? null
        : { ...status.lastChange, at: new Date(status.lastChange.at * 1000).toISOString() },
  };
}

/** The agent named in the path: it must be in the inventory. */
function agentParam(c: Context<AdminEnv>): Agent {
  const id = c.req.param('agent') ?? '';
  const { agents } = loadedPolicy().bundle;
  const agent = Object.hasOwn(agents, id) ? agents[id] : undefined;
  if (agent === undefined) throw refuse('unknown_target', { agent: id.slice(0, 128) });
  c.var.audit.agent = id;
  c.var.audit.target = `agent:${id}`;
  return agent;
}

/** Agents' status fetched at once: bounds the fan-out of one listing page to the agents' objects. */
const AGENT_LIST_CONCURRENCY = 50;

const AgentListQuery = z.strictObject({
  /** The `next_cursor` of the previous page: the last agent id it listed. */
  cursor: z.string().min(1).max(64).optional(),
  limit: z
    .string()
    .regex(/^[0-9]{1,3}$/, 'limit is a whole number from 1 to 500')
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(1, 'limit is a whole number from 1 to 500')
        .max(500, 'limit is a whole number from 1 to 500'),
    )
    .default(100),
});

export const adminRoutes = new Hono<AppEnv>();

adminRoutes.get(
  '/admin/kill-switch',
  startAudit('admin.kill_switch.read'),
  requireRole('admin', 'auditor'),
  async (c) => {
    c.var.audit.target = 'kill-switch';
    const report = await callStore('kill_switch', () => killSwitch(c.env).report(), KILL_SWITCH_DEADLINE_MS);
    return done(c, killSwitchJson(report));
  },
);

adminRoutes.put(
  '/admin/kill-switch',
  startAudit('admin.kill_switch.set'),
  requireRole('admin'),
  limitBody,
  async (c) => {
    const { engaged, reason } = await readBody(c, KillSwitchBody);
    Object.assign(c.var.audit, { target: 'kill-switch', adminReason: reason, details: { engaged } });
    const change = { engaged, reason, by: c.var.admin.id };
    const report = await callStore('kill_switch', () => killSwitch(c.env).set(change), KILL_SWITCH_DEADLINE_MS);
    c.var.audit.details = { engaged, version: report.version, shards: KILL_SWITCH_SHARDS };
    return done(c, killSwitchJson(report));
  },
);

adminRoutes.get('/admin/agents', startAudit('admin.agent.list'), requireRole('admin', 'auditor'), async (c) => {
  const query = AgentListQuery.safeParse(c.req.query());
  if (!query.success) {
    const [issue] = query.error.issues;
    const field = issue?.path.join('.') || 'query';
    const hint = issue?.code === 'unrecognized_keys' ? 'the parameters are cursor and limit' : issue?.message;
    throw refuse('invalid_field', { field }, { description: `invalid ${field}: ${hint}` });
  }
  const { cursor, limit } = query.data;
  const ids = Object.keys(loadedPolicy().bundle.agents).sort();
  const page = ids.filter((id) => cursor === undefined || id > cursor).slice(0, limit);
  const { agents } = loadedPolicy().bundle;
  const listed: ReturnType<typeof agentJson>[] = [];
  for (let i = 0; i < page.length; i += AGENT_LIST_CONCURRENCY) {
    const chunk = page.slice(i, i + AGENT_LIST_CONCURRENCY);
    const statuses = await callStore('agent_state', () =>
      Promise.all(chunk.map((id) => agentStub(c.env, id).status())),
    );
    chunk.forEach((id, n) => {
      listed.push(agentJson(agents[id] as Agent, statuses[n] as AgentStatus));
    });
  }
  const last = page.at(-1);
  const more = last !== undefined && ids.at(-1) !== last;
  c.var.audit.details = { count: listed.length, ...(cursor !== undefined && { cursor }) };
  return done(c, { agents: listed, next_cursor: more ? last : null });
});

adminRoutes.get('/admin/agents/:agent', startAudit('admin.agent.read'), requireRole('admin', 'auditor'), async (c) => {
  const agent = agentParam(c);
  const status = await callStore('agent_state', () => agentStub(c.env, agent.id).status());
  return done(c, agentJson(agent, status));
});

for (const action of ['revoke', 'suspend', 'resume'] as const) {
  adminRoutes.post(
    `/admin/agents/:agent/${action}`,
    startAudit(`admin.agent.${action}`),
    requireRole('admin'),
    limitBody,
    async (c) => {
      const agent = agentParam(c);
      const { reason } = await readBody(c, ReasonBody);
      c.var.audit.adminReason = reason;
      const by = c.var.admin.id;
      const stub = agentStub(c.env, agent.id);
      const status = await callStore('agent_state', async (): Promise<AgentStatus> => {
        if (action === 'revoke') return stub.revokeAll(by, reason);
        if (action === 'suspend') return stub.suspend(by, reason);
        return stub.resume(by, reason);
      });
      return done(c, agentJson(agent, status));
    },
  );
}

adminRoutes.post(
  '/admin/tokens/:jti/revoke',
  startAudit('admin.token.revoke'),
  requireRole('admin'),
  limitBody,
  async (c) => {
    const jti = c.req.param('jti').slice(0, 128);
    c.var.audit.target = `token:${jti}`;
    const { reason } = await readBody(c, ReasonBody);
    c.var.audit.adminReason = reason;
    const issued = await callStore('audit_log', () => findIssuedToken(c.env.AUDIT_DB, jti));
    if (issued === undefined) throw refuse('unknown_target', { jti });
    Object.assign(c.var.audit, { agent: issued.agent, tokenJti: jti, tokenExp: issued.exp });
    await callStore('agent_state', () => agentStub(c.env, issued.agent).revokeToken(jti, issued.exp));
    return done(c, { jti, agent: issued.agent, revoked: true });
  },
);

adminRoutes.post(
  '/admin/tasks/:task_id/revoke',
  startAudit('admin.task.revoke'),
  requireRole('admin'),
  limitBody,
  async (c) => {
    const taskId = c.req.param('task_id').slice(0, 128);
    Object.assign(c.var.audit, { target: `task:${taskId}`, taskId });
    const { reason } = await readBody(c, ReasonBody);
    c.var.audit.adminReason = reason;
    const agents = await callStore('audit_log', () => agentsOfTask(c.env.AUDIT_DB, taskId));
    if (agents.length === 0) throw refuse('unknown_target', { task: taskId });
    await callStore('agent_state', () =>
      Promise.all(agents.map((agent) => agentStub(c.env, agent).finishTask(taskId))),
    );
    c.var.audit.details = { agents };
    return done(c, { task_id: taskId, agents, revoked: true });
  },
);

adminRoutes.get('/admin/audit/verify', startAudit('admin.audit.verify'), requireRole('admin', 'auditor'), async (c) => {
  const sealer = c.env.AUDIT_SEALER.get(c.env.AUDIT_SEALER.idFromName('global'));
  // Seal what is new first; a seal that no longer matches its record stops the sealer, and the check
  // below then reports where, against the head anchored so far.
  const head = await sealer.seal().catch(() => callStore('audit_sealer', () => sealer.head()));
  const report = await callStore('audit_log', () => verifyChain(c.env.AUDIT_DB, head), KILL_SWITCH_DEADLINE_MS);
  c.var.audit.details = { valid: report.valid, records: report.records, problems: report.problems.length };
  return done(c, { valid: report.valid, records: report.records, head: report.head, problems: report.problems });
});

adminRoutes.get('/admin/audit', startAudit('admin.audit.read'), requireRole('admin', 'auditor'), async (c) => {
  const query = AuditQuery.safeParse(c.req.query());
  if (!query.success) {
    const field = query.error.issues[0]?.path.join('.') || 'query';
    throw refuse('invalid_field', { field }, { description: `invalid ${field}` });
  }
  c.var.audit.details = { query: query.data };
  const page = await callStore('audit_log', () => listAudit(c.env.AUDIT_DB, query.data));
  return done(c, {
    records: page.records.map((record) => auditRecordJson(record, page.seals.get(record.seq))),
    next_cursor: page.nextCursor,
  });
});
