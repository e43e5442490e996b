import { env } from 'cloudflare:workers';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { matchAdminCredential } from '../../worker/admin/credentials';
import type { AuditEvent } from '../../worker/audit/schema';
import { newAdminCredential, parseAdminCredential } from '../../worker/core/admin-credential';
import { secretHash } from '../../worker/core/credential-secret';
import { app } from '../../worker/index';
import type { AdminCredential, AdminRole } from '../../worker/policy/bundle';
import { loadedPolicy } from '../../worker/policy/loaded';
import {
  adminFetch,
  bearer,
  expectInvalidToken,
  INSUFFICIENT_SCOPE_CHALLENGE,
  INVALID_TOKEN_CHALLENGE,
  REALM_CHALLENGE,
} from '../helpers/admin';
import { flipChar } from '../helpers/attestation';
import { auditRecords, drainAudit, lastAudit, sendAudited } from '../helpers/audit';
import { exchange, readError } from '../helpers/requests';

const ROLE_CREDENTIALS: Record<AdminRole, { id: string; credential: string }> = {
  admin: { id: 'demo-admin', credential: creds.admin },
  approver: { id: 'demo-approver', credential: creds.approver },
  auditor: { id: 'demo-auditor', credential: creds.auditor },
};

function secretOf(credential: string): string {
  const parsed = parseAdminCredential(credential);
  if (parsed === undefined) throw new Error(`not an admin credential: ${credential}`);
  return parsed.secret;
}

/** An access token and the task it was issued for, to aim the token and task routes at. */
const issued = { jti: '', taskId: `admin-auth-${crypto.randomUUID()}`, accessToken: '', approvalId: '' };
/** An archive segment, to aim the segment route at. */
const archived = { segment: 0 };

beforeAll(async () => {
  // A record older than the hot window (30 days, and the day a partial segment may wait), moved to the archive.
  expect((await exchange()).status).toBe(200);
  await drainAudit();
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(Date.now() + 32 * 86_400_000);
  const sealer = env.AUDIT_SEALER.get(env.AUDIT_SEALER.idFromName('global'));
  const moved = (await sealer.maintain()).archive.segments;
  vi.useRealTimers();
  archived.segment = moved[0]?.segment ?? 0;
  expect(archived.segment).toBeGreaterThan(0);

  const response = await exchange({ task: { description: 'Token for the admin route matrix', id: issued.taskId } });
  expect(response.status).toBe(200);
  issued.accessToken = ((await response.json()) as { access_token: string }).access_token;
  const [grant] = (await auditRecords()).filter((record) => record.taskId === issued.taskId);
  if (grant === undefined) throw new Error('no record of the matrix token');
  expect(grant).toMatchObject({ event: 'token.exchange', decision: 'granted', taskId: issued.taskId });
  issued.jti = grant.tokenJti ?? '';
  // The agent's object announces this approval to the policy's webhook while the file runs: answered here,
  // never sent to the network.
  vi.spyOn(globalThis, 'fetch').mockImplementation(async () => new Response(null, { status: 204 }));
  const pending = await exchange({
    audience: 'https://iam.example.com',
    scope: 'iam:disable-user',
    task: { description: 'Approval for the admin route matrix', justification: 'route matrix' },
  });
  expect(pending.status).toBe(400);
  issued.approvalId = ((await pending.json()) as { approval_id: string }).approval_id;
});

interface AdminRoute {
  method: 'GET' | 'PUT' | 'POST';
  path: () => string;
  body?: unknown;
  event: string;
  roles: readonly AdminRole[];
}

/** Every admin route, the roles that may call it, and the event its audit record carries. */
const ROUTES: Record<string, AdminRoute> = {
  'GET /admin/kill-switch': {
    method: 'GET',
    path: () => '/admin/kill-switch',
    event: 'admin.kill_switch.read',
    roles: ['admin', 'auditor'],
  },
  'PUT /admin/kill-switch': {
    method: 'PUT',
    path: () => '/admin/kill-switch',
    body: { engaged: false, reason: 'route matrix: leaves the switch released' },
    event: 'admin.kill_switch.set',
    roles: ['admin'],
  },
  'GET /admin/agents': {
    method: 'GET',
    path: () => '/admin/agents?limit=2',
    event: 'admin.agent.list',
    roles: ['admin', 'auditor'],
  },
  'GET /admin/agents/:agent': {
    method: 'GET',
    path: () => '/admin/agents/graph-indexer',
    event: 'admin.agent.read',
    roles: ['admin', 'auditor'],
  },
  'POST /admin/agents/:agent/revoke': {
    method: 'POST',
    path: () => '/admin/agents/graph-indexer/revoke',
    body: { reason: 'route matrix' },
    event: 'admin.agent.revoke',
    roles: ['admin'],
  },
  'POST /admin/agents/:agent/suspend': {
    method: 'POST',
    path: () => '/admin/agents/graph-indexer/suspend',
    body: { reason: 'route matrix' },
    event: 'admin.agent.suspend',
    roles: ['admin'],
  },
  'POST /admin/agents/:agent/resume': {
    method: 'POST',
    path: () => '/admin/agents/graph-indexer/resume',
    body: { reason: 'route matrix' },
    event: 'admin.agent.resume',
    roles: ['admin'],
  },
  'POST /admin/tokens/:jti/revoke': {
    method: 'POST',
    path: () => `/admin/tokens/${issued.jti}/revoke`,
    body: { reason: 'route matrix' },
    event: 'admin.token.revoke',
    roles: ['admin'],
  },
  'POST /admin/tasks/:task_id/revoke': {
    method: 'POST',
    path: () => `/admin/tasks/${issued.taskId}/revoke`,
    body: { reason: 'route matrix' },
    event: 'admin.task.revoke',
    roles: ['admin'],
  },
  'GET /admin/audit': {
    method: 'GET',
    path: () => '/admin/audit?limit=1',
    event: 'admin.audit.read',
    roles: ['admin', 'auditor'],
  },
  'GET /admin/audit/backlog': {
    method: 'GET',
    path: () => '/admin/audit/backlog',
    event: 'admin.audit.backlog',
    roles: ['admin', 'auditor'],
  },
  'GET /admin/audit/archive': {
    method: 'GET',
    path: () => '/admin/audit/archive',
    event: 'admin.audit.archive.list',
    roles: ['admin', 'auditor'],
  },
  'GET /admin/audit/archive/:segment': {
    method: 'GET',
    path: () => `/admin/audit/archive/${archived.segment}`,
    event: 'admin.audit.archive.read',
    roles: ['admin', 'auditor'],
  },
  'GET /admin/audit/verify': {
    method: 'GET',
    path: () => '/admin/audit/verify',
    event: 'admin.audit.verify',
    roles: ['admin', 'auditor'],
  },
  'GET /admin/approvals': {
    method: 'GET',
    path: () => '/admin/approvals?status=pending',
    event: 'admin.approval.list',
    roles: ['approver', 'admin', 'auditor'],
  },
  'GET /admin/approvals/:id': {
    method: 'GET',
    path: () => `/admin/approvals/${issued.approvalId}`,
    event: 'admin.approval.read',
    roles: ['approver', 'admin', 'auditor'],
  },
  'GET /admin/whoami': {
    method: 'GET',
    path: () => '/admin/whoami',
    event: 'admin.whoami',
    roles: ['admin', 'approver', 'auditor'],
  },
  'GET /admin/usage': {
    method: 'GET',
    path: () => '/admin/usage?days=7',
    event: 'admin.usage.read',
    roles: ['admin', 'auditor'],
  },
  'GET /admin/review': {
    method: 'GET',
    path: () => '/admin/review?days=7',
    event: 'admin.review.read',
    roles: ['admin', 'auditor'],
  },
  'POST /admin/approvals/:id': {
    method: 'POST',
    path: () => `/admin/approvals/${issued.approvalId}`,
    body: { decision: 'deny', reason: 'route matrix' },
    event: 'admin.approval.decide',
    roles: ['approver'],
  },
};

type Caller = 'no credential' | 'an invalid credential' | AdminRole;
const CALLERS: readonly Caller[] = ['no credential', 'an invalid credential', 'approver', 'auditor', 'admin'];

function callerHeaders(caller: Caller): Record<string, string> {
  if (caller === 'no credential') return {};
  if (caller === 'an invalid credential') {
    return bearer(`tessera_admin.demo-admin.${flipChar(secretOf(creds.admin), 10)}`);
  }
  return bearer(ROLE_CREDENTIALS[caller].credential);
}

interface Outcome {
  status: number;
  error?: string;
  challenge?: string;
  audit: Partial<AuditEvent>;
}

/** What the spec promises for `caller` on `route`. */
function expectedOutcome(route: AdminRoute, caller: Caller): Outcome {
  if (caller === 'no credential') {
    return {
      status: 401,
      error: 'invalid_token',
      challenge: REALM_CHALLENGE,
      audit: { decision: 'refused', errorCode: 'invalid_token', reason: 'credential_required', actor: null },
    };
  }
  if (caller === 'an invalid credential') {
    return {
      status: 401,
      error: 'invalid_token',
      challenge: INVALID_TOKEN_CHALLENGE,
      audit: { decision: 'refused', errorCode: 'invalid_token', reason: 'credential_invalid', actor: null },
    };
  }
  const who = { actor: ROLE_CREDENTIALS[caller].id, actorRole: caller };
  if (!route.roles.includes(caller)) {
    return {
      status: 403,
      error: 'insufficient_scope',
      challenge: INSUFFICIENT_SCOPE_CHALLENGE,
      audit: { decision: 'refused', errorCode: 'insufficient_scope', reason: 'role_required', ...who },
    };
  }
  return { status: 200, audit: { decision: 'granted', errorCode: null, reason: null, ...who } };
}

const MATRIX = Object.keys(ROUTES).flatMap((name) =>
  CALLERS.map((caller) => {
    const route = ROUTES[name] as AdminRoute;
    return [name, caller, expectedOutcome(route, caller).status] as const;
  }),
);

describe('/admin/*: who may call which route', () => {
  it('lists every admin route the worker serves in this matrix', () => {
    // `/admin/meter` is served only with the billing meter on (test/meter/, test/admin/meter-off.test.ts).
    const served = new Set(
      app.routes
        .filter((route) => route.path.startsWith('/admin/') && route.path !== '/admin/meter')
        .map((route) => `${route.method} ${route.path}`),
    );
    expect([...served].sort()).toEqual(Object.keys(ROUTES).sort());
  });

  it.each(MATRIX)('%s with %s answers %i, and is audited', async (name, caller) => {
    const route = ROUTES[name] as AdminRoute;
    const expected = expectedOutcome(route, caller);
    const { response, audit } = await sendAudited(() =>
      adminFetch(route.path(), { method: route.method, body: route.body, headers: callerHeaders(caller) }),
    );
    // Read as bytes: the archive segment's body is gzip, which `text()` warns about.
    expect(response.status, new TextDecoder().decode(await response.clone().arrayBuffer())).toBe(expected.status);
    expect(response.headers.get('cache-control')).toBe('no-store');
    if (expected.error !== undefined) {
      expect((await readError(response)).error).toBe(expected.error);
      expect(response.headers.get('www-authenticate')).toBe(expected.challenge);
    }
    expect(audit).toMatchObject({ event: route.event, ...expected.audit });
  });
});

describe('admin credentials: the Authorization header', () => {
  const adminSecret = secretOf(creds.admin);

  it.each([
    ['the canonical form', `Bearer ${creds.auditor}`],
    ['a lowercase scheme (RFC 7235 §2.1: schemes are case-insensitive)', `bearer ${creds.auditor}`],
    ['an uppercase scheme', `BEARER ${creds.auditor}`],
    ['several spaces after the scheme', `Bearer    ${creds.auditor}`],
    ['trailing whitespace', `Bearer ${creds.auditor}   `],
  ])('accepts %s', async (_name, authorization) => {
    const response = await adminFetch('/admin/kill-switch', { headers: { authorization } });
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await lastAudit()).toMatchObject({ decision: 'granted', actor: 'demo-auditor', actorRole: 'auditor' });
  });

  it.each([
    ['a wrong prefix', `tessera_admn.demo-admin.${adminSecret}`],
    ['an uppercase prefix', `TESSERA_ADMIN.demo-admin.${adminSecret}`],
    ['no prefix', `demo-admin.${adminSecret}`],
    ['the bare secret', adminSecret],
    ['an unknown id with a well-formed secret', `tessera_admin.ghost-admin.${adminSecret}`],
    ['an id in upper case', `tessera_admin.DEMO-ADMIN.${adminSecret}`],
    ['an id naming an Object.prototype property', `tessera_admin.constructor.${adminSecret}`],
    ['the right id with another credential’s secret', `tessera_admin.demo-admin.${secretOf(creds.auditor)}`],
    ['the right id with one character of the secret changed', `tessera_admin.demo-admin.${flipChar(adminSecret, 20)}`],
    ['a truncated secret', creds.admin.slice(0, -1)],
    ['a secret with an extra character', `${creds.admin}A`],
    ['a trailing dot', `${creds.admin}.`],
    [
      'the hash that admins.yaml stores, in place of the secret',
      `tessera_admin.demo-admin.${loadedPolicy().bundle.admins.credentials['demo-admin']?.secretSha256}`,
    ],
  ])('refuses %s with 401 invalid_token', async (_name, credential) => {
    const { response, audit } = await sendAudited(() =>
      adminFetch('/admin/kill-switch', { headers: bearer(credential) }),
    );
    await expectInvalidToken(response);
    expect(audit).toMatchObject({
      event: 'admin.kill_switch.read',
      decision: 'refused',
      errorCode: 'invalid_token',
      reason: 'credential_invalid',
      actor: null,
      actorRole: null,
    });
  });

  it('refuses a Tessera access token: it is not an admin credential', async () => {
    expect(issued.accessToken).not.toBe('');
    const { response, audit } = await sendAudited(() =>
      adminFetch('/admin/kill-switch', { headers: bearer(issued.accessToken) }),
    );
    await expectInvalidToken(response);
    expect(audit).toMatchObject({ decision: 'refused', reason: 'credential_invalid', actor: null });
  });

  it('refuses whitespace inside the credential', async () => {
    const split = `tessera_admin.demo-admin. ${adminSecret}`;
    const { response, audit } = await sendAudited(() =>
      adminFetch('/admin/kill-switch', { headers: { authorization: `Bearer ${split}` } }),
    );
    expect(response.status).toBe(401);
    expect((await readError(response)).error).toBe('invalid_token');
    expect(audit).toMatchObject({ decision: 'refused', errorCode: 'invalid_token', actor: null, actorRole: null });
  });

  // RFC 6750 §3.1: a request that tried an unsupported method gets the challenge without an error code.
  it('refuses Basic authentication as no credential at all', async () => {
    const basic = `Basic ${btoa(`demo-admin:${adminSecret}`)}`;
    const { response, audit } = await sendAudited(() =>
      adminFetch('/admin/kill-switch', { headers: { authorization: basic } }),
    );
    await expectInvalidToken(response, REALM_CHALLENGE);
    expect(audit).toMatchObject({ decision: 'refused', reason: 'credential_required', actor: null });
  });

  it('refuses an empty bearer credential', async () => {
    const { response } = await sendAudited(() =>
      adminFetch('/admin/kill-switch', { headers: { authorization: 'Bearer' } }),
    );
    expect(response.status).toBe(401);
    expect((await readError(response)).error).toBe('invalid_token');
  });
});

describe('admin credentials: minting and hashing (worker/core/admin-credential)', () => {
  it('mints tessera_admin.<id>.<secret> whose secret hashes to the hash admins.yaml stores', async () => {
    const { credential, secretSha256 } = await newAdminCredential('ops-oncall');
    expect(credential).toMatch(/^tessera_admin\.ops-oncall\.[A-Za-z0-9_-]{43}$/);
    expect(secretSha256).toMatch(/^[0-9a-f]{64}$/);
    const parsed = parseAdminCredential(credential);
    expect(parsed?.id).toBe('ops-oncall');
    expect(await secretHash(parsed?.secret ?? '')).toBe(secretSha256);
    expect(credential).not.toContain(secretSha256);
  });

  it('mints a different secret every time', async () => {
    const first = await newAdminCredential('ops-oncall');
    const second = await newAdminCredential('ops-oncall');
    expect(first.credential).not.toBe(second.credential);
    expect(first.secretSha256).not.toBe(second.secretSha256);
  });

  it('hashes the demo secrets to what policies/admins.yaml declares', async () => {
    const stored = loadedPolicy().bundle.admins.credentials;
    for (const role of ['admin', 'approver', 'auditor'] as const) {
      const { id, credential } = ROLE_CREDENTIALS[role];
      expect(stored[id]).toMatchObject({ id, role, secretSha256: await secretHash(secretOf(credential)) });
    }
  });

  it('matches a minted credential once its hash is stored, and only with its own secret', async () => {
    const { credential, secretSha256 } = await newAdminCredential('ops-oncall');
    const entry: AdminCredential = { id: 'ops-oncall', role: 'auditor', secretSha256, groups: [], demo: false };
    expect(await matchAdminCredential(credential, { 'ops-oncall': entry })).toEqual(entry);
    expect(await matchAdminCredential(credential, {})).toBeUndefined();
    const other = await newAdminCredential('ops-oncall');
    expect(await matchAdminCredential(other.credential, { 'ops-oncall': entry })).toBeUndefined();
  });

  it('does not let a minted credential in before admins.yaml stores its hash', async () => {
    const { credential } = await newAdminCredential('ops-oncall');
    await expectInvalidToken(await adminFetch('/admin/kill-switch', { headers: bearer(credential) }));
  });

  it('compares hashes in constant time, and spends the same comparison on an unknown id', async () => {
    const compare = vi.spyOn(crypto.subtle, 'timingSafeEqual');
    try {
      const { credentials } = loadedPolicy().bundle.admins;
      expect(await matchAdminCredential(`tessera_admin.ghost-admin.${secretOf(creds.admin)}`, credentials)).toBe(
        undefined,
      );
      expect(await matchAdminCredential(creds.admin.replace(/.$/, '_'), credentials)).toBeUndefined();
      expect(compare).toHaveBeenCalledTimes(2);
      for (const [left, right] of compare.mock.calls) {
        expect((left as Uint8Array).byteLength).toBe(64);
        expect((right as Uint8Array).byteLength).toBe(64);
      }
    } finally {
      compare.mockRestore();
    }
  });

  it('parses only the exact credential format', () => {
    expect(parseAdminCredential(creds.admin)).toEqual({ id: 'demo-admin', secret: secretOf(creds.admin) });
    for (const bad of ['', 'tessera_admin..x', `tessera_admin.-admin.${secretOf(creds.admin)}`, `${creds.admin}\n`]) {
      expect(parseAdminCredential(bad)).toBeUndefined();
    }
  });
});

describe('/admin/*: the audit record of an admin call', () => {
  it('records a granted change with who, which role, on what target and why', async () => {
    const reason = 'investigating unexpected graph reads';
    const { response, audit } = await sendAudited(() =>
      adminFetch('/admin/agents/graph-indexer/suspend', {
        method: 'POST',
        body: { reason },
        headers: { ...bearer(creds.admin), 'cf-connecting-ip': '203.0.113.7', 'user-agent': 'tessera-cli/1' },
      }),
    );
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ agent: 'graph-indexer', suspended: true });
    expect(audit).toMatchObject({
      event: 'admin.agent.suspend',
      decision: 'granted',
      actor: 'demo-admin',
      actorRole: 'admin',
      agent: 'graph-indexer',
      target: 'agent:graph-indexer',
      adminReason: reason,
      ip: '203.0.113.7',
      userAgent: 'tessera-cli/1',
      policyVersion: loadedPolicy().bundle.version,
    });

    const resumed = await adminFetch('/admin/agents/graph-indexer/resume', {
      method: 'POST',
      body: { reason: 'false alarm' },
      headers: bearer(creds.admin),
    });
    expect(resumed.status).toBe(200);
    expect(await lastAudit()).toMatchObject({ event: 'admin.agent.resume', adminReason: 'false alarm' });
  });

  it('records a kill switch change with its target, reason, version and shard count', async () => {
    const { response, audit } = await sendAudited(() =>
      adminFetch('/admin/kill-switch', {
        method: 'PUT',
        body: { engaged: false, reason: 'confirming the switch is released' },
        headers: bearer(creds.admin),
      }),
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as { version: number; engaged: boolean; by: string };
    expect(body).toMatchObject({ engaged: false, by: 'demo-admin' });
    expect(audit).toMatchObject({
      event: 'admin.kill_switch.set',
      decision: 'granted',
      actor: 'demo-admin',
      actorRole: 'admin',
      target: 'kill-switch',
      adminReason: 'confirming the switch is released',
    });
    expect(JSON.parse(audit.detail ?? 'null')).toEqual({ engaged: false, version: body.version, shards: 128 });
  });

  it('records a refusal for the role with the caller and the roles the route needs', async () => {
    const { response, audit } = await sendAudited(() =>
      adminFetch('/admin/kill-switch', {
        method: 'PUT',
        body: { engaged: true, reason: 'an auditor tries to stop issuance' },
        headers: bearer(creds.auditor),
      }),
    );
    expect(response.status).toBe(403);
    expect((await readError(response)).error).toBe('insufficient_scope');
    expect(audit).toMatchObject({
      event: 'admin.kill_switch.set',
      decision: 'refused',
      errorCode: 'insufficient_scope',
      reason: 'role_required',
      actor: 'demo-auditor',
      actorRole: 'auditor',
    });
    expect(JSON.parse(audit.detail ?? 'null')).toEqual({ required: ['admin'] });
  });

  it('records a refusal after authentication (an unknown agent) with the caller', async () => {
    const { response, audit } = await sendAudited(() =>
      adminFetch('/admin/agents/no-such-agent', { headers: bearer(creds.auditor) }),
    );
    expect(response.status).toBe(404);
    expect((await readError(response)).error).toBe('not_found');
    expect(audit).toMatchObject({
      event: 'admin.agent.read',
      decision: 'refused',
      reason: 'unknown_target',
      actor: 'demo-auditor',
      actorRole: 'auditor',
    });
  });

  it('refuses a change without a reason, and records who tried', async () => {
    const { response, audit } = await sendAudited(() =>
      adminFetch('/admin/agents/graph-indexer/revoke', { method: 'POST', body: {}, headers: bearer(creds.admin) }),
    );
    expect(response.status).toBe(400);
    expect((await readError(response)).error).toBe('invalid_request');
    expect(audit).toMatchObject({
      event: 'admin.agent.revoke',
      decision: 'refused',
      reason: 'invalid_field',
      actor: 'demo-admin',
      actorRole: 'admin',
      target: 'agent:graph-indexer',
    });
  });
});
