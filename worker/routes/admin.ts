/**
 * `/admin/*`: what the admin on call reaches for (the audit log is `admin-audit.ts`). Every call needs a
 * role (see `admin/auth.ts`), is audited with who, what, on which target and why, and answers only once the
 * change is durable everywhere it must be (all kill-switch shards and leases; the agent's state), its record
 * committed with it by the object that made it.
 */
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { type AdminEnv, requireRole } from '../admin/auth';
import type { AgentStatus, StatusAction } from '../agents/agent-state';
import type { KillSwitchReport } from '../control/kill-switch';
import { notFound, publicEcho, refuse } from '../core/errors';
import { clip } from '../core/well-formed';
import type { AppEnv } from '../http/app-env';
import { recordGranted, startAudit } from '../http/audit-trail';
import { NO_STORE } from '../http/errors';
import { readFields, readQuery } from '../http/read-body';
import { type Agent, inventoryAgent } from '../policy/bundle';
import { loadedPolicy } from '../policy/loaded';
import { agentStore } from '../stores/agents';
import { auditDb } from '../stores/audit-log';
import { killSwitchReport, setKillSwitch } from '../stores/kill-switch';

const Reason = z.string().trim().min(1, 'a reason is required').max(1000);
const ReasonBody = z.object({ reason: Reason });
/** An agent revoke may suspend it in the same write: the one action for a compromised agent. */
const AgentRevokeBody = z.object({ reason: Reason, suspend: z.boolean().default(false) });
const KillSwitchBody = z.object({
  engaged: z.union([z.boolean(), z.enum(['true', 'false']).transform((value) => value === 'true')]),
  reason: Reason,
});

/** What each member of an admin body must be, in our own words (never zod's, which may quote). */
export const ADMIN_BODY_HINTS: ReadonlyMap<string, string> = new Map([
  ['reason', 'reason is why, 1-1000 characters'],
  ['engaged', 'engaged is true or false'],
]);

/** Reads an admin body with `schema`; a member that fails it is named, with what it must be. */
export async function readBody<S extends z.ZodType>(c: Context<AdminEnv>, schema: S): Promise<z.output<S>> {
  const parsed = schema.safeParse(await readFields(c.req.raw));
  if (!parsed.success) {
    const [issue] = parsed.error.issues;
    const field = issue?.path.join('.') || 'body';
    const hint = ADMIN_BODY_HINTS.get(field) ?? 'the body is a JSON object: see docs/api.md';
    throw refuse(
      'invalid_field',
      { field: clip(field, 128) },
      { description: `invalid ${publicEcho(field)}: ${hint}` },
    );
  }
  return parsed.data;
}

/** Records a read (or a change no one object records) in the intake, then answers with `body`. */
export async function done(c: Context<AdminEnv>, body: Record<string, unknown>) {
  await recordGranted(c);
  return c.json(body, 200, NO_STORE);
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
  const agent = inventoryAgent(loadedPolicy().bundle, id);
  if (agent === undefined) throw notFound('agent', { agent: clip(id, 128) });
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
    .regex(/^[0-9]{1,3}$/)
    .transform(Number)
    .pipe(z.number().int().min(1).max(500))
    .default(100),
});

/** What each parameter of the agent listing must be, in our own words. */
export const AGENT_LIST_HINTS: ReadonlyMap<string, string> = new Map([
  ['cursor', 'cursor is the next_cursor of the previous page'],
  ['limit', 'limit is a whole number from 1 to 500'],
]);

/** Agents asked at once by a lookup that D1 could not answer yet. */
const LOOKUP_CONCURRENCY = 50;

/**
 * Asks every agent's object about the records that have not reached D1 yet (a decision a moment ago), at most
 * {@link LOOKUP_CONCURRENCY} at once: with D1, that covers every decision ever made.
 */
async function askEveryAgent<T>(ask: (agent: string) => Promise<T>): Promise<{ agent: string; answer: T }[]> {
  const ids = Object.keys(loadedPolicy().bundle.agents);
  const answers: { agent: string; answer: T }[] = [];
  for (let i = 0; i < ids.length; i += LOOKUP_CONCURRENCY) {
    const chunk = ids.slice(i, i + LOOKUP_CONCURRENCY);
    answers.push(...(await Promise.all(chunk.map(async (agent) => ({ agent, answer: await ask(agent) })))));
  }
  return answers;
}

/** The agent and expiry of an issued token: from D1, or from its agent's object while on its way there. */
async function issuedToken(env: Env, jti: string): Promise<{ agent: string; exp: number } | undefined> {
  const stored = await auditDb(env).issuedToken(jti);
  if (stored !== undefined) return stored;
  const store = agentStore(env);
  const pending = await askEveryAgent((agent) => store.pendingGrant(agent, jti));
  const found = pending.find(({ answer }) => answer !== undefined);
  return found?.answer === undefined ? undefined : { agent: found.agent, exp: found.answer.exp };
}

/**
 * Every agent that asked for a token for the task, granted or not (a token waiting for an approval is the
 * agent's task too), from D1 and from the records on their way there.
 */
async function agentsOfTask(env: Env, taskId: string): Promise<string[]> {
  const store = agentStore(env);
  const [stored, pending] = await Promise.all([
    auditDb(env).agentsOfTask(taskId),
    askEveryAgent((agent) => store.asksForTask(agent, taskId)),
  ]);
  const asked = pending.flatMap(({ agent, answer }) => (answer ? [agent] : []));
  return [...new Set([...stored, ...asked])].sort();
}

export const adminRoutes = new Hono<AppEnv>();

adminRoutes.get(
  '/admin/kill-switch',
  startAudit('admin.kill_switch.read'),
  requireRole('admin', 'auditor'),
  async (c) => {
    c.var.audit.target = 'kill-switch';
    const report = await killSwitchReport(c.env, c.var.audit);
    return c.json(killSwitchJson(report), 200, NO_STORE);
  },
);

adminRoutes.put('/admin/kill-switch', startAudit('admin.kill_switch.set'), requireRole('admin'), async (c) => {
  const { engaged, reason } = await readBody(c, KillSwitchBody);
  Object.assign(c.var.audit, { target: 'kill-switch', adminReason: reason, details: { engaged } });
  const report = await setKillSwitch(c.env, { engaged, reason, by: c.var.admin.id }, c.var.audit);
  return c.json(killSwitchJson(report), 200, NO_STORE);
});

adminRoutes.get('/admin/agents', startAudit('admin.agent.list'), requireRole('admin', 'auditor'), async (c) => {
  const query = AgentListQuery.safeParse(readQuery(c.req.raw));
  if (!query.success) {
    const [issue] = query.error.issues;
    const field = issue?.path.join('.') || 'query';
    const hint =
      issue?.code === 'unrecognized_keys'
        ? 'the parameters are cursor and limit'
        : (AGENT_LIST_HINTS.get(field) ?? 'see docs/api.md');
    throw refuse('invalid_field', { field }, { description: `invalid ${publicEcho(field)}: ${hint}` });
  }
  const { cursor, limit } = query.data;
  const { agents } = loadedPolicy().bundle;
  const ids = Object.keys(agents).sort();
  const page = ids.filter((id) => cursor === undefined || id > cursor).slice(0, limit);
  const store = agentStore(c.env);
  const listed: ReturnType<typeof agentJson>[] = [];
  for (let i = 0; i < page.length; i += AGENT_LIST_CONCURRENCY) {
    const chunk = page.slice(i, i + AGENT_LIST_CONCURRENCY);
    const statuses = await Promise.all(chunk.map((id) => store.status(id)));
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
  const status = await agentStore(c.env).status(agent.id, c.var.audit);
  return c.json(agentJson(agent, status), 200, NO_STORE);
});

/** An admin's change of `agent`, answered with its state after the change. */
async function changeAgent(
  c: Context<AdminEnv>,
  agent: Agent,
  action: StatusAction,
  reason: string,
  options: { suspend?: boolean },
) {
  c.var.audit.adminReason = reason;
  if (options.suspend === true) c.var.audit.details = { suspend: true };
  const status = await agentStore(c.env).changeStatus(agent.id, action, c.var.admin.id, reason, c.var.audit, options);
  return c.json(agentJson(agent, status), 200, NO_STORE);
}

adminRoutes.post('/admin/agents/:agent/revoke', startAudit('admin.agent.revoke'), requireRole('admin'), async (c) => {
  const agent = agentParam(c);
  const { reason, suspend } = await readBody(c, AgentRevokeBody);
  return changeAgent(c, agent, 'revoke', reason, { suspend });
});

for (const action of ['suspend', 'resume'] as const) {
  adminRoutes.post(
    `/admin/agents/:agent/${action}`,
    startAudit(`admin.agent.${action}`),
    requireRole('admin'),
    async (c) => {
      const agent = agentParam(c);
      return changeAgent(c, agent, action, (await readBody(c, ReasonBody)).reason, {});
    },
  );
}

adminRoutes.post('/admin/tokens/:jti/revoke', startAudit('admin.token.revoke'), requireRole('admin'), async (c) => {
  const jti = clip(c.req.param('jti'), 128);
  c.var.audit.target = `token:${jti}`;
  const { reason } = await readBody(c, ReasonBody);
  c.var.audit.adminReason = reason;
  const issued = await issuedToken(c.env, jti);
  if (issued === undefined) throw notFound('token', { jti });
  Object.assign(c.var.audit, { agent: issued.agent, tokenJti: jti, tokenExp: issued.exp });
  await agentStore(c.env).revokeToken(issued.agent, jti, issued.exp, c.var.audit);
  return c.json({ jti, agent: issued.agent, revoked: true }, 200, NO_STORE);
});

adminRoutes.post('/admin/tasks/:task_id/revoke', startAudit('admin.task.revoke'), requireRole('admin'), async (c) => {
  const taskId = clip(c.req.param('task_id'), 128);
  Object.assign(c.var.audit, { target: `task:${taskId}`, taskId });
  const { reason } = await readBody(c, ReasonBody);
  c.var.audit.adminReason = reason;
  const agents = await agentsOfTask(c.env, taskId);
  if (agents.length === 0) throw notFound('task', { task: taskId });
  const store = agentStore(c.env);
  await Promise.all(agents.map((agent) => store.finishTask(agent, taskId)));
  c.var.audit.details = { agents };
  return done(c, { task_id: taskId, agents, revoked: true });
});
