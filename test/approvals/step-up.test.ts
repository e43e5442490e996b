/**
 * Step-up approval over HTTP (OpenID CIBA poll mode): `POST /token` opens an approval for an action whose
 * grant needs humans (`disable-user-after-approval`: `iam:disable-user` on the IAM API, a justification,
 * one approver of group `security`, four-eyes, tokens of at most 120 s), the agent polls with the same
 * request plus `approval_id`, approvers decide on `/admin/approvals/{id}`, and the first poll after an
 * approval collects exactly one token.
 *
 * The clock is frozen a day ahead of the real one and only moves forward across the file: polls must be
 * `interval` seconds apart and approvals expire, and the agent object's alarms (set on the fake clock) stay
 * in the real future, so no webhook delivery runs behind a test's back. Each test starts with a fresh
 * rate-limit bucket (the demo agent's object is evicted).
 */
import { decodeJwt } from 'jose';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { type AccessTeam, mockAccessCerts, newAccessTeam, signAccessJwt, viaAccess } from '../helpers/access';
import { adminFetch, bearer } from '../helpers/admin';
import { admissionCall, admit, agentObject, evictAgentObject, testDraft } from '../helpers/agent-object';
import {
  APPROVAL_ID,
  type ApprovalJson,
  DISABLE_USER,
  incidentTask,
  openApproval,
  type Pending,
  poll,
  readApproval,
  requestDisable,
} from '../helpers/approvals';
import { detailOf, drainAudit, lastAudit, sendAudited } from '../helpers/audit';
import { nowSeconds, useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, IAM, ISSUER } from '../helpers/demo';
import { type ExchangeFields, expectError } from '../helpers/requests';
import { introspect } from '../helpers/tokens';

const OWNER = 'alice@example.com';
const GRANT = 'disable-user-after-approval';
/** policies/tessera.yaml `approvals` and the grant's @max_ttl. */
const INTERVAL = 5;
const EXPIRES_IN = 900;
const APPROVED_TTL = 120;

const clock = useForwardClock(24 * 3600 * 1000);

beforeEach(async () => {
  await evictAgentObject();
});

afterEach(() => {
  vi.restoreAllMocks();
});

function decide(
  id: string,
  body: unknown,
  headers: Record<string, string> = bearer(creds.approver),
): Promise<Response> {
  return adminFetch(`/admin/approvals/${id}`, { method: 'POST', body, headers });
}

async function approve(id: string, headers?: Record<string, string>): Promise<void> {
  const response = await decide(id, { decision: 'approve', reason: 'SOC ticket INC-77 confirms' }, headers);
  expect(response.status, await response.clone().text()).toBe(200);
}

interface Collected {
  token: string;
  claims: ReturnType<typeof decodeJwt>;
  body: { access_token: string; expires_in: number; scope: string; task_id: string };
}

/** Waits out the interval and collects the token of an approved approval. */
async function collect(pending: Pending): Promise<Collected> {
  clock.advance(INTERVAL);
  const response = await poll(pending);
  expect(response.status, await response.clone().text()).toBe(200);
  const body = (await response.json()) as Collected['body'];
  return { token: body.access_token, claims: decodeJwt(body.access_token), body };
}

/** The ids `GET /admin/approvals` lists, once the records of the approvals opened so far are in D1. */
/** The ids of every page of the listing (`status`, or its default), following `next_cursor`. */
async function listIds(status?: string, credential = creds.approver): Promise<string[]> {
  await drainAudit();
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const query = new URLSearchParams({ ...(status !== undefined && { status }), ...(cursor !== null && { cursor }) });
    const response = await adminFetch(`/admin/approvals?${query}`, { headers: bearer(credential) });
    expect(response.status, await response.clone().text()).toBe(200);
    const page = (await response.json()) as { approvals: ApprovalJson[]; next_cursor: string | null };
    ids.push(...page.approvals.map((approval) => approval.id));
    cursor = page.next_cursor;
  } while (cursor !== null);
  return ids;
}

/** The newest record is a refused token exchange for `reason`. */
async function expectRefusedExchange(reason: string, target?: string): Promise<void> {
  expect(await lastAudit()).toMatchObject({
    event: 'token.exchange',
    decision: 'refused',
    reason,
    agent: DEMO_AGENT,
    ...(target !== undefined && { target }),
  });
}

describe('POST /token: asking for an action that needs approval', () => {
  it('refuses it without a justification with invalid_scope, and opens no approval', async () => {
    const response = await requestDisable(incidentTask({ justification: undefined }));
    await expectError(response, 400, 'invalid_scope');
    const record = await lastAudit();
    expect(record).toMatchObject({ decision: 'refused', reason: 'justification_required', target: null });
    expect(detailOf(record)).toMatchObject({ actions: [DISABLE_USER] });
  });

  it('answers a justified request with authorization_pending, its approval id, the interval and expiry', async () => {
    const task = incidentTask();
    const response = await requestDisable(task);
    const body = await expectError(response, 400, 'authorization_pending');
    expect(body).toMatchObject({ interval: INTERVAL, expires_in: EXPIRES_IN, task_id: task.id });
    expect(body.approval_id).toMatch(APPROVAL_ID);
    expect(await lastAudit()).toMatchObject({
      event: 'token.exchange',
      decision: 'refused',
      errorCode: 'authorization_pending',
      reason: 'approval_required',
      target: `approval:${body.approval_id}`,
      agent: DEMO_AGENT,
      audience: IAM,
      requestedActions: DISABLE_USER,
      taskId: task.id,
      justification: task.justification,
      tokenJti: null,
    });
  });

  it('shows approvers exactly what was asked for, and who may approve it', async () => {
    const pending = await openApproval();
    const approval = await readApproval(pending.id);
    expect(approval).toEqual({
      id: pending.id,
      status: 'pending',
      agent: DEMO_AGENT,
      owner: OWNER,
      audience: IAM,
      actions: [DISABLE_USER],
      needs_approval: [DISABLE_USER],
      task: { id: pending.task.id, description: pending.task.description, hash: expect.any(String) },
      justification: pending.task.justification,
      ttl: APPROVED_TTL,
      created_at: new Date(pending.openedAt * 1000).toISOString(),
      expires_at: new Date((pending.openedAt + EXPIRES_IN) * 1000).toISOString(),
      approvals_required: 1,
      approver_groups: ['security'],
      four_eyes: true,
      rollback: [{ grant: GRANT, runbook: 'https://runbooks.example.com/iam/enable-user' }],
      decisions: [],
    });
  });

  it('names only the action that needs approval when others in the request do not', async () => {
    const task = incidentTask();
    const response = await requestDisable(task, { scope: `iam:read-user ${DISABLE_USER}` });
    const body = await expectError(response, 400, 'authorization_pending');
    const approval = await readApproval(String(body.approval_id));
    expect(approval).toMatchObject({ actions: [DISABLE_USER, 'iam:read-user'], needs_approval: [DISABLE_USER] });
  });

  it('does not issue on the same request without approval_id once approved: it opens another approval', async () => {
    const pending = await openApproval();
    await approve(pending.id);
    clock.advance(INTERVAL);
    const again = await requestDisable(pending.task);
    const body = await expectError(again, 400, 'authorization_pending');
    expect(body.approval_id).not.toBe(pending.id);
    expect((await collect(pending)).claims.approval).toEqual({ id: pending.id, by: 'demo-approver' });
  });
});

describe('POST /token: polling an approval', () => {
  it('keeps answering authorization_pending, with the seconds left, until someone decides', async () => {
    const pending = await openApproval();
    clock.advance(INTERVAL);
    const first = await expectError(await poll(pending), 400, 'authorization_pending');
    expect(first).toMatchObject({ approval_id: pending.id, interval: INTERVAL, expires_in: EXPIRES_IN - INTERVAL });
    await expectRefusedExchange('approval_pending', `approval:${pending.id}`);
    clock.advance(60);
    const second = await expectError(await poll(pending), 400, 'authorization_pending');
    expect(second).toMatchObject({ expires_in: EXPIRES_IN - INTERVAL - 60 });
  });

  it('tells an agent that polls sooner than the interval to slow down, with Retry-After', async () => {
    const pending = await openApproval();
    clock.advance(INTERVAL - 1);
    const response = await poll(pending);
    expect(response.headers.get('retry-after')).toBe(String(INTERVAL));
    const body = await expectError(response, 400, 'slow_down');
    expect(body).toMatchObject({ approval_id: pending.id, interval: INTERVAL });
    await expectRefusedExchange('approval_poll_too_fast', `approval:${pending.id}`);
    clock.advance(1);
    await expectError(await poll(pending), 400, 'authorization_pending');
    await expectError(await poll(pending), 400, 'slow_down');
  });

  it('does not hand over an approved approval to a poll that came too soon; the next one gets it', async () => {
    const pending = await openApproval();
    await approve(pending.id);
    clock.advance(1);
    await expectError(await poll(pending), 400, 'slow_down');
    expect((await readApproval(pending.id)).status).toBe('approved');
    const { claims } = await collect(pending);
    expect(claims.approval).toEqual({ id: pending.id, by: 'demo-approver' });
  });

  it('issues exactly one token once approved: the approval and approver in its claims, 120 s to live', async () => {
    const pending = await openApproval();
    await approve(pending.id);
    const { claims, body } = await collect(pending);
    expect(body).toMatchObject({ expires_in: APPROVED_TTL, scope: DISABLE_USER, task_id: pending.task.id });
    expect(claims).toMatchObject({
      iss: ISSUER,
      sub: DEMO_AGENT,
      aud: IAM,
      scope: DISABLE_USER,
      owner: OWNER,
      task: { id: pending.task.id },
      approval: { id: pending.id, by: 'demo-approver' },
    });
    expect(Number(claims.exp) - Number(claims.iat)).toBe(APPROVED_TTL);
    expect((await readApproval(pending.id)).status).toBe('collected');

    clock.advance(INTERVAL);
    await expectError(await poll(pending), 400, 'invalid_grant');
    await expectRefusedExchange('approval_used', `approval:${pending.id}`);
    clock.advance(60);
    await expectError(await poll(pending), 400, 'invalid_grant');
    await expectRefusedExchange('approval_used');
  });

  it('refuses a denied approval with access_denied, on every poll', async () => {
    const pending = await openApproval();
    const denial = await decide(pending.id, { decision: 'deny', reason: 'not the account in the ticket' });
    expect(denial.status).toBe(200);
    expect(await denial.json()).toMatchObject({
      status: 'denied',
      decisions: [{ by: 'demo-approver', decision: 'deny', reason: 'not the account in the ticket' }],
    });
    clock.advance(INTERVAL);
    await expectError(await poll(pending), 400, 'access_denied');
    await expectRefusedExchange('approval_denied', `approval:${pending.id}`);
    clock.advance(INTERVAL);
    await expectError(await poll(pending), 400, 'access_denied');
  });

  it('refuses an approval nobody decided in time with expired_token, and no one can decide it then', async () => {
    const pending = await openApproval();
    clock.advance(EXPIRES_IN);
    await expectError(await poll(pending), 400, 'expired_token');
    await expectRefusedExchange('approval_expired', `approval:${pending.id}`);
    expect((await readApproval(pending.id)).status).toBe('expired');

    const late = await decide(pending.id, { decision: 'approve', reason: 'sorry, was at lunch' });
    await expectError(late, 400, 'invalid_request');
    expect(await lastAudit()).toMatchObject({
      event: 'admin.approval.decide',
      decision: 'refused',
      reason: 'approval_not_pending',
    });
    expect((await readApproval(pending.id)).decisions).toEqual([]);
  });

  it('refuses an approved approval collected only after its expiry with expired_token', async () => {
    const pending = await openApproval();
    await approve(pending.id);
    clock.advance(EXPIRES_IN);
    await expectError(await poll(pending), 400, 'expired_token');
    expect((await readApproval(pending.id)).status).toBe('expired');
  });

  it.each<[string, (pending: Pending) => ExchangeFields]>([
    ['more actions than were approved', () => ({ scope: `${DISABLE_USER} iam:read-user` })],
    ['another action', () => ({ scope: 'iam:read-user' })],
    ['another audience', () => ({ audience: 'https://graph.example.com' })],
    ['a requested_ttl the approval did not have', () => ({ requested_ttl: APPROVED_TTL })],
    ['another task id', (p) => ({ task: { ...p.task, id: `${p.task.id}-2` } })],
    ['no task id', (p) => ({ task: { ...p.task, id: undefined } })],
    ['another task description', (p) => ({ task: { ...p.task, description: `${p.task.description} and j.roe` } })],
    ['another justification', (p) => ({ task: { ...p.task, justification: 'because' } })],
    ['no justification', (p) => ({ task: { ...p.task, justification: undefined } })],
  ])(
    'refuses a poll that asks for %s with invalid_grant, and leaves the approval to collect',
    async (_name, change) => {
      const pending = await openApproval();
      await approve(pending.id);
      clock.advance(INTERVAL);
      await expectError(await poll(pending, change(pending)), 400, 'invalid_grant');
      await expectRefusedExchange('approval_mismatch', `approval:${pending.id}`);
      expect((await readApproval(pending.id)).status).toBe('approved');
      const { claims } = await collect(pending);
      expect(claims.approval).toEqual({ id: pending.id, by: 'demo-approver' });
    },
  );

  it('holds a requested_ttl to what was asked: collected only with the same one, for a token of that lifetime', async () => {
    const pending = await openApproval(incidentTask(), { requested_ttl: 60 });
    await approve(pending.id);
    clock.advance(INTERVAL);
    await expectError(await poll(pending, { requested_ttl: undefined }), 400, 'invalid_grant');
    await expectRefusedExchange('approval_mismatch');
    await expectError(await poll(pending, { requested_ttl: APPROVED_TTL }), 400, 'invalid_grant');
    await expectRefusedExchange('approval_mismatch');
    const { claims, body } = await collect(pending);
    expect(body.expires_in).toBe(60);
    expect(Number(claims.exp) - Number(claims.iat)).toBe(60);
  });

  it.each<[string, () => string]>([
    ['that is not an approval id', () => 'not-an-approval'],
    ['of another agent', () => `${crypto.randomUUID()}.release-bot`],
    ['the agent never had', () => `${crypto.randomUUID()}.demo-agent`],
  ])('refuses an approval id %s with invalid_grant', async (_name, id) => {
    await expectError(await requestDisable(incidentTask(), { approval_id: id() }), 400, 'invalid_grant');
    await expectRefusedExchange('approval_unknown');
  });

  it("refuses another agent's approval id even when it names a real approval", async () => {
    const pending = await openApproval();
    await approve(pending.id);
    const foreign = pending.id.replace(/\.demo-agent$/, '.release-bot');
    clock.advance(INTERVAL);
    await expectError(await poll(pending, { approval_id: foreign }), 400, 'invalid_grant');
    await expectRefusedExchange('approval_unknown');
    expect((await readApproval(pending.id)).status).toBe('approved');
  });
});

describe('POST /admin/approvals/{id}: deciding', () => {
  it('lets an approver approve, and audits the decision with the approver and the reason', async () => {
    const pending = await openApproval();
    const { response, audit } = await sendAudited(() =>
      decide(pending.id, { decision: 'approve', reason: 'SOC ticket INC-77 confirms' }),
    );
    expect(response.status, await response.clone().text()).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const decided = (await response.json()) as ApprovalJson;
    expect(decided).toMatchObject({ id: pending.id, status: 'approved' });
    expect(decided.decisions).toEqual([
      {
        by: 'demo-approver',
        decision: 'approve',
        reason: 'SOC ticket INC-77 confirms',
        at: new Date(nowSeconds() * 1000).toISOString(),
      },
    ]);
    expect(audit).toMatchObject({
      event: 'admin.approval.decide',
      decision: 'granted',
      actor: 'demo-approver',
      actorRole: 'approver',
      target: `approval:${pending.id}`,
      adminReason: 'SOC ticket INC-77 confirms',
      agent: DEMO_AGENT,
      owner: OWNER,
      taskId: pending.task.id,
    });
    expect(detailOf(audit)).toEqual({ decision: 'approve', status: 'approved', rollback: expect.any(Array) });
  });

  it('audits a denial with the approver and the reason', async () => {
    const pending = await openApproval();
    const { response, audit } = await sendAudited(() =>
      decide(pending.id, { decision: 'deny', reason: 'wrong account' }),
    );
    expect(response.status).toBe(200);
    expect(audit).toMatchObject({
      event: 'admin.approval.decide',
      decision: 'granted',
      actor: 'demo-approver',
      adminReason: 'wrong account',
    });
    expect(detailOf(audit)).toEqual({ decision: 'deny', status: 'denied', rollback: expect.any(Array) });
  });

  it.each<[string, string]>([
    ['approved', 'approve'],
    ['denied', 'deny'],
  ])('refuses a second decision on an approval already %s with invalid_request', async (status, first) => {
    const pending = await openApproval();
    expect((await decide(pending.id, { decision: first, reason: 'first' })).status).toBe(200);
    for (const decision of ['approve', 'deny']) {
      const { response, audit } = await sendAudited(() => decide(pending.id, { decision, reason: 'second' }));
      await expectError(response, 400, 'invalid_request');
      expect(audit).toMatchObject({ decision: 'refused', reason: 'approval_not_pending', actor: 'demo-approver' });
    }
    const approval = await readApproval(pending.id);
    expect(approval.status).toBe(status);
    expect(approval.decisions.map((d) => d.reason)).toEqual(['first']);
  });

  it.each<[string, unknown]>([
    ['no reason', { decision: 'approve' }],
    ['a blank reason', { decision: 'approve', reason: '   ' }],
    ['no decision', { reason: 'looks fine' }],
    ['an unknown decision', { decision: 'maybe', reason: 'looks fine' }],
    ['a reason over 1000 characters', { decision: 'approve', reason: 'x'.repeat(1001) }],
  ])('refuses a decision with %s with 400 invalid_request, and leaves the approval pending', async (_name, body) => {
    const pending = await openApproval();
    const { response, audit } = await sendAudited(() => decide(pending.id, body));
    await expectError(response, 400, 'invalid_request');
    expect(audit).toMatchObject({ event: 'admin.approval.decide', decision: 'refused', reason: 'invalid_field' });
    const approval = await readApproval(pending.id);
    expect([approval.status, approval.decisions]).toEqual(['pending', []]);
  });

  it.each<[string, () => string]>([
    ['an id the agent never had', () => `${crypto.randomUUID()}.demo-agent`],
    ['an id of an agent that does not exist', () => `${crypto.randomUUID()}.no-such-agent`],
    ['something that is not an approval id', () => 'not-an-approval'],
  ])('answers 404 not_found for %s, to reads and decisions', async (_name, id) => {
    const target = id();
    const read = await adminFetch(`/admin/approvals/${target}`, { headers: bearer(creds.approver) });
    await expectError(read, 404, 'not_found');
    const { response, audit } = await sendAudited(() => decide(target, { decision: 'approve', reason: 'r' }));
    await expectError(response, 404, 'not_found');
    expect(audit).toMatchObject({ event: 'admin.approval.decide', decision: 'refused', reason: 'unknown_target' });
  });

  it.each<[string, string]>([
    ['admin', creds.admin],
    ['auditor', creds.auditor],
  ])('does not let an %s decide: 403 insufficient_scope, and the approval stays pending', async (role, credential) => {
    const pending = await openApproval();
    const { response, audit } = await sendAudited(() =>
      decide(pending.id, { decision: 'approve', reason: 'I am in charge' }, bearer(credential)),
    );
    await expectError(response, 403, 'insufficient_scope');
    expect(audit).toMatchObject({
      event: 'admin.approval.decide',
      decision: 'refused',
      reason: 'role_required',
      actor: `demo-${role}`,
      actorRole: role,
    });
    expect((await readApproval(pending.id)).status).toBe('pending');
  });

  it('refuses a decision without a credential with 401', async () => {
    const pending = await openApproval();
    await expectError(await decide(pending.id, { decision: 'approve', reason: 'r' }, {}), 401, 'invalid_token');
    await expectError(
      await decide(pending.id, { decision: 'approve', reason: 'r' }, bearer(`${creds.approver}x`)),
      401,
      'invalid_token',
    );
    expect((await readApproval(pending.id)).status).toBe('pending');
  });

  it('refuses an approver outside the required group, when asked through the agent object', async () => {
    // No approver credential lacks the group, so the rule is checked where decisions are taken.
    const pending = await openApproval();
    const outsider = await agentObject().decideApproval(
      pending.id,
      { approver: { id: 'outsider', groups: ['support'] }, decision: 'approve', reason: 'r' },
      testDraft('admin.approval.decide'),
    );
    expect(outsider.outcome).toEqual({ decided: false, reason: 'not_in_group' });
    expect((await readApproval(pending.id)).status).toBe('pending');
    const member = await agentObject().decideApproval(
      pending.id,
      { approver: { id: 'insider', groups: ['security'] }, decision: 'approve', reason: 'r' },
      testDraft('admin.approval.decide'),
    );
    expect(member.outcome).toEqual({ decided: true });
    expect((await collect(pending)).claims.approval).toEqual({ id: pending.id, by: 'insider' });
  });

  it('answers an unknown approval asked through the agent object as unknown', async () => {
    const answer = await agentObject().decideApproval(
      `${crypto.randomUUID()}.demo-agent`,
      { approver: { id: 'insider', groups: ['security'] }, decision: 'approve', reason: 'r' },
      testDraft('admin.approval.decide'),
    );
    expect(answer.outcome).toEqual({ decided: false, reason: 'unknown' });
  });
});

const ACCESS_KID = 'approvals-test-access-key';

describe('POST /admin/approvals/{id}: four-eyes, with approvers signed in through Cloudflare Access', () => {
  let team: AccessTeam;

  beforeAll(async () => {
    team = await newAccessTeam(ACCESS_KID);
  });

  beforeEach(() => {
    mockAccessCerts(team);
  });

  /** The headers of an approver signed in through Access as `email`. */
  const viaAccessAs = async (email: string) => viaAccess(await signAccessJwt(team, email));

  it("refuses alice@example.com, the agent's owner, with 403 access_denied, and records why", async () => {
    const pending = await openApproval();
    const { response, audit } = await sendAudited(async () =>
      decide(pending.id, { decision: 'approve', reason: 'my own agent, I know it' }, await viaAccessAs(OWNER)),
    );
    expect(await expectError(response, 403, 'access_denied')).toMatchObject({ rule: 'four_eyes' });
    expect(audit).toMatchObject({
      event: 'admin.approval.decide',
      decision: 'refused',
      errorCode: 'access_denied',
      reason: 'approver_not_allowed',
      actor: OWNER,
      actorRole: 'approver',
      target: `approval:${pending.id}`,
    });
    expect(detailOf(audit)).toMatchObject({ rule: 'four_eyes' });
    const approval = await readApproval(pending.id);
    expect([approval.status, approval.decisions]).toEqual(['pending', []]);
    clock.advance(INTERVAL);
    await expectError(await poll(pending), 400, 'authorization_pending');
  });

  it('lets erin@example.com, an approver of group security, approve; her email is on the token', async () => {
    const pending = await openApproval();
    const { response, audit } = await sendAudited(async () =>
      decide(pending.id, { decision: 'approve', reason: 'checked INC-77' }, await viaAccessAs('erin@example.com')),
    );
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await response.json()).toMatchObject({
      status: 'approved',
      decisions: [{ by: 'erin@example.com', decision: 'approve', reason: 'checked INC-77' }],
    });
    expect(audit).toMatchObject({ decision: 'granted', actor: 'erin@example.com', actorRole: 'approver' });
    const { claims } = await collect(pending);
    expect(claims.approval).toEqual({ id: pending.id, by: 'erin@example.com' });
  });

  it('does not let an Access auditor decide', async () => {
    const pending = await openApproval();
    const response = await decide(
      pending.id,
      { decision: 'approve', reason: 'r' },
      await viaAccessAs('bob@example.com'),
    );
    await expectError(response, 403, 'insufficient_scope');
    expect((await readApproval(pending.id)).status).toBe('pending');
  });
});

describe('GET /admin/approvals: reading and listing', () => {
  it.each<[string, string]>([
    ['approver', creds.approver],
    ['admin', creds.admin],
    ['auditor', creds.auditor],
  ])('lets an %s list and read approvals, and audits the reads', async (role, credential) => {
    const pending = await openApproval();
    const list = await sendAudited(() => adminFetch('/admin/approvals', { headers: bearer(credential) }));
    expect(list.response.status).toBe(200);
    expect(list.response.headers.get('cache-control')).toBe('no-store');
    const ids = ((await list.response.json()) as { approvals: ApprovalJson[] }).approvals.map((a) => a.id);
    expect(ids).toContain(pending.id);
    expect(list.audit).toMatchObject({
      event: 'admin.approval.list',
      decision: 'granted',
      actor: `demo-${role}`,
      actorRole: role,
    });

    const read = await sendAudited(() => adminFetch(`/admin/approvals/${pending.id}`, { headers: bearer(credential) }));
    expect(read.response.status).toBe(200);
    expect(await read.response.json()).toMatchObject({ id: pending.id, status: 'pending' });
    expect(read.audit).toMatchObject({
      event: 'admin.approval.read',
      decision: 'granted',
      actor: `demo-${role}`,
      target: `approval:${pending.id}`,
      agent: DEMO_AGENT,
    });
  });

  it('refuses to list without a credential', async () => {
    await expectError(await adminFetch('/admin/approvals'), 401, 'invalid_token');
  });

  it('lists by status: pending by default, approved, denied, collected and expired', async () => {
    const expired = await openApproval();
    clock.advance(EXPIRES_IN - 300);
    const pending = await openApproval();
    const approved = await openApproval();
    await approve(approved.id);
    const denied = await openApproval();
    expect((await decide(denied.id, { decision: 'deny', reason: 'no' })).status).toBe(200);
    const collected = await openApproval();
    await approve(collected.id);
    await collect(collected);
    clock.advance(300);

    const expected: Record<string, Pending> = { pending, approved, denied, collected, expired };
    for (const [status, approval] of Object.entries(expected)) {
      const ids = await listIds(status);
      expect(ids, status).toContain(approval.id);
      for (const [other, otherApproval] of Object.entries(expected)) {
        if (other !== status) expect(ids, `${other} in ${status}`).not.toContain(otherApproval.id);
      }
    }
    expect(await listIds()).toEqual(await listIds('pending'));
  });

  it('lists the oldest approvals first, each in full', async () => {
    const older = await openApproval();
    clock.advance(1);
    const newer = await openApproval();
    await drainAudit();
    const response = await adminFetch(`/admin/approvals?status=pending&agent=${DEMO_AGENT}&limit=200`, {
      headers: bearer(creds.auditor),
    });
    const { approvals } = (await response.json()) as { approvals: ApprovalJson[] };
    const ids = approvals.map((a) => a.id);
    expect(ids.indexOf(older.id)).toBeGreaterThanOrEqual(0);
    expect(ids.indexOf(older.id)).toBeLessThan(ids.indexOf(newer.id));
    expect(approvals.find((a) => a.id === newer.id)).toEqual(await readApproval(newer.id));
  });

  it.each(['granted', 'PENDING', ''])('refuses the status %j with 400 invalid_request', async (status) => {
    const response = await adminFetch(`/admin/approvals?status=${status}`, { headers: bearer(creds.approver) });
    await expectError(response, 400, 'invalid_request');
  });

  it('refuses an unknown query parameter with 400 invalid_request', async () => {
    const response = await adminFetch('/admin/approvals?page=2', { headers: bearer(creds.approver) });
    await expectError(response, 400, 'invalid_request');
  });
});

describe('a collected approval: audit, introspection, and a collection that fails', () => {
  it('records the granted exchange with the approval and who approved it', async () => {
    const pending = await openApproval();
    await approve(pending.id);
    const { claims } = await collect(pending);
    const record = await lastAudit();
    expect(record).toMatchObject({
      event: 'token.exchange',
      decision: 'granted',
      agent: DEMO_AGENT,
      audience: IAM,
      requestedActions: DISABLE_USER,
      grantedActions: DISABLE_USER,
      taskId: pending.task.id,
      justification: pending.task.justification,
      target: `approval:${pending.id}`,
      tokenJti: claims.jti,
      tokenExp: claims.exp,
    });
    expect(detailOf(record)).toEqual({
      grants: [GRANT],
      ttl: APPROVED_TTL,
      ttlCapped: true,
      approval: { id: pending.id, by: ['demo-approver'] },
    });
  });

  it('shows the approval claim when the collected token is introspected', async () => {
    const pending = await openApproval();
    await approve(pending.id);
    const { token } = await collect(pending);
    expect(await introspect(token)).toMatchObject({
      active: true,
      sub: DEMO_AGENT,
      aud: IAM,
      scope: DISABLE_USER,
      approval: { id: pending.id, by: 'demo-approver' },
    });
  });

  it('puts a collected approval back when no token came of it, and the next poll collects it', async () => {
    // The pipeline releases a collection whose token could not be signed (test/core/exchange-pipeline.test.ts);
    // here, the agent's object does what that release asks, for real.
    const pending = await openApproval();
    await approve(pending.id);
    clock.advance(INTERVAL);
    const terms = (await readApproval(pending.id)).status;
    expect(terms).toBe('approved');
    const record = await agentObject().approval(pending.id);
    if (record === undefined) throw new Error('no approval');
    const collected = await admit(
      agentObject(),
      admissionCall(
        {
          replayKey: `test\n${crypto.randomUUID()}`,
          replayUntil: nowSeconds() + 300,
          taskId: record.terms.taskId,
          rateLimit: { perMinute: 600, burst: 100 },
        },
        {
          kind: 'collect',
          approvalId: pending.id,
          terms: record.terms,
          grant: {
            tokenJti: crypto.randomUUID(),
            tokenExp: nowSeconds() + 60,
            grantedActions: DISABLE_USER,
            details: {},
          },
        },
      ),
    );
    expect(collected).toMatchObject({ outcome: 'granted', approvedBy: ['demo-approver'] });
    expect((await readApproval(pending.id)).status).toBe('collected');

    await agentObject().releaseApproval(pending.id, testDraft(), {
      decision: 'refused',
      reason: 'signing_unavailable',
    });
    expect((await readApproval(pending.id)).status).toBe('approved');
    const { claims } = await collect(pending);
    expect(claims.approval).toEqual({ id: pending.id, by: 'demo-approver' });
  });

  it('keeps the approval for the next poll when the kill switch refuses the collecting one', async () => {
    const pending = await openApproval();
    await approve(pending.id);
    const killSwitch = (engaged: boolean) =>
      adminFetch('/admin/kill-switch', {
        method: 'PUT',
        body: { engaged, reason: 'approval drill' },
        headers: bearer(creds.admin),
      });
    expect((await killSwitch(true)).status).toBe(200);
    try {
      clock.advance(INTERVAL);
      await expectError(await poll(pending), 403, 'access_denied');
      await expectRefusedExchange('kill_switch_engaged');
    } finally {
      expect((await killSwitch(false)).status).toBe(200);
    }
    expect((await readApproval(pending.id)).status).toBe('approved');
    const { claims } = await collect(pending);
    expect(claims.approval).toEqual({ id: pending.id, by: 'demo-approver' });
  });
});

describe('a task revoked while its token waits for approval', () => {
  const revokeTask = (taskId: string) =>
    adminFetch(`/admin/tasks/${taskId}/revoke`, {
      method: 'POST',
      body: { reason: 'INC-77: the agent was hijacked mid-task' },
      headers: bearer(creds.admin),
    });

  it('is found while the approval is pending, and the approval, approved later, is never collected', async () => {
    const pending = await openApproval();
    const response = await revokeTask(pending.task.id as string);
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await response.json()).toEqual({ task_id: pending.task.id, agents: [DEMO_AGENT], revoked: true });
    await approve(pending.id);
    clock.advance(INTERVAL);
    await expectError(await poll(pending), 400, 'invalid_request');
    await expectRefusedExchange('task_finished', `approval:${pending.id}`);
    expect((await readApproval(pending.id)).status).toBe('approved');
  });

  it('is found once its approval is approved, and the approved token is never collected', async () => {
    const pending = await openApproval();
    await approve(pending.id);
    // The approval's request has reached D1 by now: the revoke finds the task there, as it would an hour later.
    await drainAudit();
    expect((await revokeTask(pending.task.id as string)).status).toBe(200);
    clock.advance(INTERVAL);
    await expectError(await poll(pending), 400, 'invalid_request');
    await expectRefusedExchange('task_finished', `approval:${pending.id}`);
  });
});
