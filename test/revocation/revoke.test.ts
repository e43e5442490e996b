/**
 * Ending tokens early: RFC 7009 revocation by whoever holds a token, task completion by the agent, and the
 * admin revocations (one token, one task, every token of an agent, suspension). A revoked token is inactive
 * at introspection, nothing else dies with it, the change is durable, and every call is audited.
 *
 * Every test runs on a frozen clock that only moves forward across the file: an agent-wide revocation
 * leaves a cut-off (`revoked_before`) behind it, and a later test must not issue tokens under it by
 * accident. Each test also starts with a fresh rate-limit bucket (the agent's object is evicted).
 */
import { runInDurableObject } from 'cloudflare:test';
import { exports } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import type { AgentState } from '../../worker/agents/agent-state';
import { loadedPolicy } from '../../worker/policy/loaded';
import { agentObject, evictAgentObject, testDraft } from '../helpers/agent-object';
import { forgedCopy } from '../helpers/attestation';
import { lastAudit } from '../helpers/audit';
import { useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, ISSUER, TICKETS } from '../helpers/demo';
import { exchange, expectError, postForm, postJsonTo, TASK_DESCRIPTION } from '../helpers/requests';
import { type Issued, introspect, issue } from '../helpers/tokens';

const { clockSkew } = loadedPolicy().bundle.settings.attestations;
const OWNER = 'alice@example.com';

const clock = useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

const revoke = (token: string) => postJsonTo('/revoke', { token });
const complete = (taskId: string, token?: string) =>
  postJsonTo(`/tasks/${taskId}/complete`, {}, token === undefined ? {} : { authorization: `Bearer ${token}` });

function admin(path: string, body: unknown = { reason: 'incident INC-42' }, credential = creds.admin) {
  return postJsonTo(path, body, { authorization: `Bearer ${credential}` });
}

async function isActive(token: string): Promise<boolean> {
  return (await introspect(token)).active as boolean;
}

/** The jtis the agent's object holds as revoked, straight from its storage. */
function revokedJtis(): Promise<string[]> {
  return runInDurableObject(agentObject(), (_instance: AgentState, state) =>
    state.storage.sql
      .exec<{ jti: string }>('SELECT jti FROM revoked_tokens')
      .toArray()
      .map((row) => row.jti),
  );
}

/** The newest audit record is the admin call `event` by the demo admin on `target`, with its reason. */
async function expectAdminAudit(event: string, target: string, reason = 'incident INC-42'): Promise<void> {
  expect(await lastAudit()).toMatchObject({
    event,
    decision: 'granted',
    actor: 'demo-admin',
    actorRole: 'admin',
    target,
    adminReason: reason,
  });
}

describe('POST /revoke (RFC 7009)', () => {
  it('revokes a live token and no other token of the agent, even of the same task', async () => {
    const revoked = await issue('task-revoke-one');
    const sibling = await issue('task-revoke-one');
    expect(await isActive(revoked.token)).toBe(true);

    const response = await revoke(revoked.token);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({});

    expect(await isActive(revoked.token)).toBe(false);
    expect(await isActive(sibling.token)).toBe(true);
  });

  it('accepts the form encoding (RFC 7009 §2.1), with or without a token_type_hint', async () => {
    const plain = await issue();
    const hinted = await issue();
    expect((await postForm({ token: plain.token }, '/revoke')).status).toBe(200);
    expect((await postForm({ token: hinted.token, token_type_hint: 'access_token' }, '/revoke')).status).toBe(200);
    expect(await isActive(plain.token)).toBe(false);
    expect(await isActive(hinted.token)).toBe(false);
  });

  it('answers 200 again for a token already revoked', async () => {
    const issued = await issue();
    expect((await revoke(issued.token)).status).toBe(200);
    const again = await revoke(issued.token);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({});
    expect(await isActive(issued.token)).toBe(false);
  });

  it('audits a revocation with the token it revoked', async () => {
    const issued = await issue('task-revoke-audit');
    await revoke(issued.token);
    expect(await lastAudit()).toMatchObject({
      event: 'token.revoke',
      decision: 'granted',
      errorCode: null,
      agent: DEMO_AGENT,
      owner: OWNER,
      audience: TICKETS,
      taskId: 'task-revoke-audit',
      tokenJti: issued.jti,
      tokenExp: issued.exp,
    });
  });

  it('answers 200 for garbage, changes nothing, and audits the attempt as refused', async () => {
    const live = await issue();
    const before = await revokedJtis();

    const response = await revoke('not-a-token');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({});

    expect(await revokedJtis()).toEqual(before);
    expect(await isActive(live.token)).toBe(true);
    expect(await lastAudit()).toMatchObject({
      event: 'token.revoke',
      decision: 'refused',
      reason: 'invalid_token',
      tokenJti: null,
    });
  });

  it('answers 200 for an expired token and records nothing', async () => {
    const expired = await issue(undefined, 60);
    clock.advance(expired.exp - Math.floor(clock.ms / 1000) + clockSkew + 1);

    const response = await revoke(expired.token);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({});

    expect(await revokedJtis()).not.toContain(expired.jti);
    expect(await lastAudit()).toMatchObject({ event: 'token.revoke', decision: 'refused', reason: 'invalid_token' });
  });

  it("answers 200 for a copy signed by another key under the broker's kid, and the real token lives on", async () => {
    const real = await issue();
    const forged = await forgedCopy(real.token);

    const response = await revoke(forged);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({});

    expect(await revokedJtis()).not.toContain(real.jti);
    expect(await isActive(real.token)).toBe(true);
  });

  it('refuses a request without a token with 400 invalid_request, and audits it', async () => {
    await expectError(await postJsonTo('/revoke', {}), 400, 'invalid_request');
    expect(await lastAudit()).toMatchObject({
      event: 'token.revoke',
      decision: 'refused',
      errorCode: 'invalid_request',
    });
    await expectError(await postForm({}, '/revoke'), 400, 'invalid_request');
    await expectError(await postForm({ token: '' }, '/revoke'), 400, 'invalid_request');
  });

  it("keeps a revocation when the agent's Durable Object is evicted", async () => {
    const revoked = await issue();
    const live = await issue();
    await revoke(revoked.token);

    await evictAgentObject();

    expect(await isActive(revoked.token)).toBe(false);
    expect(await isActive(live.token)).toBe(true);
  });
});

describe('POST /tasks/{task_id}/complete', () => {
  it('finishes the task: every token of it dies, a token of another task lives on', async () => {
    const first = await issue('task-done');
    const second = await issue('task-done');
    const other = await issue('task-other');

    const response = await complete('task-done', first.token);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({ task_id: 'task-done', completed: true });

    expect(await isActive(first.token)).toBe(false);
    expect(await isActive(second.token)).toBe(false);
    expect(await isActive(other.token)).toBe(true);
  });

  it('audits the completion with the token that asked for it', async () => {
    const issued = await issue('task-done-audit');
    await complete('task-done-audit', issued.token);
    expect(await lastAudit()).toMatchObject({
      event: 'task.complete',
      decision: 'granted',
      agent: DEMO_AGENT,
      taskId: 'task-done-audit',
      tokenJti: issued.jti,
    });
  });

  it('refuses a new token for a finished task with invalid_request', async () => {
    const issued = await issue('task-closed');
    await complete('task-closed', issued.token);

    const response = await exchange({ task: { description: TASK_DESCRIPTION, id: 'task-closed' } });
    await expectError(response, 400, 'invalid_request');
    expect(await lastAudit()).toMatchObject({
      event: 'token.exchange',
      decision: 'refused',
      errorCode: 'invalid_request',
      reason: 'task_finished',
      taskId: 'task-closed',
      tokenJti: null,
    });
  });

  it('keeps a finished task finished when the agent object is evicted', async () => {
    const issued = await issue('task-closed-durably');
    await complete('task-closed-durably', issued.token);

    await evictAgentObject();

    expect(await isActive(issued.token)).toBe(false);
    const response = await exchange({ task: { description: TASK_DESCRIPTION, id: 'task-closed-durably' } });
    await expectError(response, 400, 'invalid_request');
  });

  it('answers 401 invalid_token with a WWW-Authenticate challenge without a token, and finishes nothing', async () => {
    const issued = await issue('task-no-credential');
    const response = await complete('task-no-credential');
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer /);
    await expectError(response, 401, 'invalid_token');
    expect(await isActive(issued.token)).toBe(true);
  });

  it('answers 401 with error="invalid_token" for a token that does not verify', async () => {
    const issued = await issue('task-bad-credential');
    for (const credential of ['not-a-token', await forgedCopy(issued.token)]) {
      const response = await complete('task-bad-credential', credential);
      expect(response.headers.get('www-authenticate')).toMatch(/^Bearer .*error="invalid_token"/);
      await expectError(response, 401, 'invalid_token');
    }
    expect(await isActive(issued.token)).toBe(true);
  });

  it('answers 401 for an expired token of the task', async () => {
    const expired = await issue('task-expired-credential', 60);
    clock.advance(expired.exp - Math.floor(clock.ms / 1000) + clockSkew + 1);
    const response = await complete('task-expired-credential', expired.token);
    await expectError(response, 401, 'invalid_token');
  });

  it('answers 403 insufficient_scope for a token of another task, and finishes nothing', async () => {
    const target = await issue('task-target');
    const intruder = await issue('task-intruder');

    const response = await complete('task-target', intruder.token);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer .*error="insufficient_scope"/);
    await expectError(response, 403, 'insufficient_scope');
    expect(await lastAudit()).toMatchObject({ event: 'task.complete', decision: 'refused', reason: 'wrong_task' });

    expect(await isActive(target.token)).toBe(true);
    expect(await isActive(intruder.token)).toBe(true);
  });

  it('completes a task twice without complaint', async () => {
    const issued = await issue('task-twice');
    expect((await complete('task-twice', issued.token)).status).toBe(200);
    const again = await complete('task-twice', issued.token);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ task_id: 'task-twice', completed: true });
  });
});

describe('POST /admin/agents/{agent}/revoke', () => {
  it('revokes every token the agent holds, including those issued in the same second', async () => {
    const first = await issue();
    const second = await issue();

    const response = await admin(`/admin/agents/${DEMO_AGENT}/revoke`);
    expect(response.status).toBe(200);
    const now = Math.floor(clock.ms / 1000);
    expect(first.iat).toBe(now);
    expect(await response.json()).toMatchObject({
      agent: DEMO_AGENT,
      owner: OWNER,
      description: expect.any(String),
      suspended: false,
      revoked_before: new Date(now * 1000).toISOString(),
      last_change: {
        action: 'revoke',
        by: 'demo-admin',
        reason: 'incident INC-42',
        at: new Date(now * 1000).toISOString(),
      },
    });

    // Issued in the revocation's own second (iat has second precision): dead, because admitted before it.
    expect(await isActive(first.token)).toBe(false);
    expect(await isActive(second.token)).toBe(false);
    // Asked for after the revocation answered, in the same second: alive.
    const sameSecond = await issue();
    expect(sameSecond.iat).toBe(now);
    expect(await isActive(sameSecond.token)).toBe(true);
  });

  it('leaves tokens issued after the revocation alive', async () => {
    const old = await issue();
    expect((await admin(`/admin/agents/${DEMO_AGENT}/revoke`)).status).toBe(200);
    clock.advance(2);
    const fresh = await issue();
    expect(await isActive(fresh.token)).toBe(true);
    expect(await isActive(old.token)).toBe(false);
  });

  // The cut-off is the revoke's commit in the agent's object, which its answer follows: a request the object
  // admits after that commit gets a live token, even one answered before the revoke's own answer arrives.
  // With `suspend` the same commit refuses every later request, so no token outlives it.
  it('cuts off at its commit in the agent’s object: a token admitted after it lives; with suspend, none', async () => {
    const before = await issue();
    await agentObject().changeStatus('revoke', 'demo-admin', 'incident INC-42', testDraft('admin.agent.revoke'));
    const after = await issue();
    expect(await isActive(before.token)).toBe(false);
    expect(await isActive(after.token)).toBe(true);

    await agentObject().changeStatus('revoke', 'demo-admin', 'INC-42', testDraft('admin.agent.revoke'), {
      suspend: true,
    });
    expect(await isActive(after.token)).toBe(false);
    await expectError(await exchange(), 403, 'access_denied');
    // Resuming gives back nothing the revoke killed.
    await agentObject().changeStatus('resume', 'demo-admin', 'test cleanup', testDraft('admin.agent.resume'));
    expect(await isActive(after.token)).toBe(false);
  });

  it('with suspend: revokes and suspends in one action, audited as one revoke', async () => {
    const held = await issue();
    const response = await admin(`/admin/agents/${DEMO_AGENT}/revoke`, { reason: 'INC-7: key leaked', suspend: true });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      suspended: true,
      revoked_before: new Date(Math.floor(clock.ms / 1000) * 1000).toISOString(),
      last_change: { action: 'revoke', reason: 'INC-7: key leaked' },
    });
    expect(await lastAudit()).toMatchObject({
      event: 'admin.agent.revoke',
      detail: expect.stringContaining('"suspend":true'),
    });
    expect(await isActive(held.token)).toBe(false);
    await expectError(await exchange(), 403, 'access_denied');
    expect((await admin(`/admin/agents/${DEMO_AGENT}/resume`, { reason: 'test cleanup' })).status).toBe(200);
    expect(await isActive(held.token)).toBe(false);
  });

  it('refuses a suspend that is not a boolean, and changes nothing', async () => {
    const held = await issue();
    await expectError(
      await admin(`/admin/agents/${DEMO_AGENT}/revoke`, { reason: 'x', suspend: 'yes' }),
      400,
      'invalid_request',
    );
    expect(await isActive(held.token)).toBe(true);
    expect((await agentObject().status()).suspended).toBe(false);
  });

  it('audits who revoked, which agent and why', async () => {
    await admin(`/admin/agents/${DEMO_AGENT}/revoke`, { reason: 'key leaked in a build log' });
    await expectAdminAudit('admin.agent.revoke', `agent:${DEMO_AGENT}`, 'key leaked in a build log');
    expect(await lastAudit()).toMatchObject({ agent: DEMO_AGENT });
  });

  it("keeps the cut-off when the agent's Durable Object is evicted", async () => {
    const old = await issue();
    await admin(`/admin/agents/${DEMO_AGENT}/revoke`);
    await evictAgentObject();
    expect(await isActive(old.token)).toBe(false);
  });
});

describe('POST /admin/agents/{agent}/suspend and /resume', () => {
  afterEach(async () => {
    if ((await agentObject().status()).suspended) {
      expect((await admin(`/admin/agents/${DEMO_AGENT}/resume`, { reason: 'test cleanup' })).status).toBe(200);
    }
  });

  it('suspends: /token is refused with 403 access_denied and every token held is inactive, none revoked', async () => {
    const held = await issue();
    const { revokedBefore } = await agentObject().status();

    const response = await admin(`/admin/agents/${DEMO_AGENT}/suspend`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      agent: DEMO_AGENT,
      owner: OWNER,
      suspended: true,
      revoked_before: revokedBefore === null ? null : new Date(revokedBefore * 1000).toISOString(),
      last_change: { action: 'suspend', by: 'demo-admin', reason: 'incident INC-42' },
    });
    await expectAdminAudit('admin.agent.suspend', `agent:${DEMO_AGENT}`);

    expect(await isActive(held.token)).toBe(false);
    await expectError(await exchange(), 403, 'access_denied');
    expect(await lastAudit()).toMatchObject({
      event: 'token.exchange',
      decision: 'refused',
      reason: 'agent_suspended',
      tokenJti: null,
    });
    // A suspension is not a cut-off: it holds however long after it the agent asks.
    clock.advance(60);
    await expectError(await exchange(), 403, 'access_denied');
  });

  it('shows the suspension at GET /admin/agents/{agent}', async () => {
    await admin(`/admin/agents/${DEMO_AGENT}/suspend`, { reason: 'odd traffic' });
    const response = await exports.default.fetch(`${ISSUER}/admin/agents/${DEMO_AGENT}`, {
      headers: { authorization: `Bearer ${creds.admin}` },
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      agent: DEMO_AGENT,
      owner: OWNER,
      suspended: true,
      last_change: { action: 'suspend', by: 'demo-admin', reason: 'odd traffic' },
    });
  });

  it('keeps a suspension when the agent object is evicted', async () => {
    await admin(`/admin/agents/${DEMO_AGENT}/suspend`);
    await evictAgentObject();
    clock.advance(2);
    await expectError(await exchange(), 403, 'access_denied');
  });

  it('resumes: /token works again, and the tokens it held are active again unless something else killed them', async () => {
    const held = await issue();
    const revoked = await issue('task-revoked-while-suspended');
    await admin(`/admin/agents/${DEMO_AGENT}/suspend`);
    expect((await admin(`/admin/tokens/${revoked.jti}/revoke`)).status).toBe(200);
    clock.advance(2);

    const response = await admin(`/admin/agents/${DEMO_AGENT}/resume`, { reason: 'false alarm' });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      agent: DEMO_AGENT,
      suspended: false,
      last_change: { action: 'resume', by: 'demo-admin', reason: 'false alarm' },
    });
    await expectAdminAudit('admin.agent.resume', `agent:${DEMO_AGENT}`, 'false alarm');

    const fresh = await issue();
    expect(await isActive(fresh.token)).toBe(true);
    expect(await isActive(held.token)).toBe(true);
    expect(await isActive(revoked.token)).toBe(false);
  });
});

describe('POST /admin/tokens/{jti}/revoke', () => {
  it('revokes one token by its jti, and no other', async () => {
    const target = await issue('task-admin-token');
    const sibling = await issue('task-admin-token');

    const response = await admin(`/admin/tokens/${target.jti}/revoke`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ jti: target.jti, agent: DEMO_AGENT, revoked: true });

    expect(await isActive(target.token)).toBe(false);
    expect(await isActive(sibling.token)).toBe(true);
  });

  it('audits who revoked which token and why', async () => {
    const target = await issue();
    await admin(`/admin/tokens/${target.jti}/revoke`);
    await expectAdminAudit('admin.token.revoke', `token:${target.jti}`);
    expect(await lastAudit()).toMatchObject({ agent: DEMO_AGENT, tokenJti: target.jti, tokenExp: target.exp });
  });

  it('answers 404 not_found for a jti the broker never issued', async () => {
    await expectError(await admin(`/admin/tokens/${crypto.randomUUID()}/revoke`), 404, 'not_found');
  });
});

describe('POST /admin/tasks/{task_id}/revoke', () => {
  it('revokes every token of the task and closes it, and no token of another task', async () => {
    const first = await issue('task-admin-task');
    const second = await issue('task-admin-task');
    const other = await issue('task-admin-other');

    const response = await admin('/admin/tasks/task-admin-task/revoke');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ task_id: 'task-admin-task', agents: [DEMO_AGENT], revoked: true });

    expect(await isActive(first.token)).toBe(false);
    expect(await isActive(second.token)).toBe(false);
    expect(await isActive(other.token)).toBe(true);
    await expectError(
      await exchange({ task: { description: TASK_DESCRIPTION, id: 'task-admin-task' } }),
      400,
      'invalid_request',
    );
  });

  it('audits who revoked which task and why', async () => {
    await issue('task-admin-task-audit');
    await admin('/admin/tasks/task-admin-task-audit/revoke');
    await expectAdminAudit('admin.task.revoke', 'task:task-admin-task-audit');
    expect(await lastAudit()).toMatchObject({ taskId: 'task-admin-task-audit' });
  });

  it('answers 404 not_found for a task no agent asked a token for', async () => {
    await expectError(await admin('/admin/tasks/task-never-issued/revoke'), 404, 'not_found');
  });
});

describe('admin revocation: bad calls change nothing', () => {
  const actions: Array<[string, (issued: Issued) => string]> = [
    ['revoke an agent', () => `/admin/agents/${DEMO_AGENT}/revoke`],
    ['suspend an agent', () => `/admin/agents/${DEMO_AGENT}/suspend`],
    ['revoke a token', (issued) => `/admin/tokens/${issued.jti}/revoke`],
    ['revoke a task', (issued) => `/admin/tasks/${issued.taskId}/revoke`],
  ];

  it.each(actions)('refuses to %s without a reason: 400 invalid_request', async (_, path) => {
    const issued = await issue();
    await expectError(await admin(path(issued), {}), 400, 'invalid_request');
    await expectError(await admin(path(issued), { reason: '   ' }), 400, 'invalid_request');
    expect(await isActive(issued.token)).toBe(true);
  });

  it.each(actions)('refuses to %s without a credential (401) or without the admin role (403)', async (_, path) => {
    const issued = await issue();
    const anonymous = await postJsonTo(path(issued), { reason: 'incident INC-42' });
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer /);
    await expectError(anonymous, 401, 'invalid_token');
    for (const credential of [creds.auditor, creds.approver]) {
      await expectError(await admin(path(issued), undefined, credential), 403, 'insufficient_scope');
    }
    expect(await isActive(issued.token)).toBe(true);
  });

  it('answers 404 not_found for an agent not in the inventory', async () => {
    for (const action of ['revoke', 'suspend', 'resume']) {
      await expectError(await admin(`/admin/agents/ghost-agent/${action}`), 404, 'not_found');
    }
  });
});
