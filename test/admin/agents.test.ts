/**
 * `GET /admin/agents`: the inventory as on call needs it, each agent with its owner, how it attests, and its
 * live state from its Durable Object; and `GET /healthz`, which touches no store.
 */
import { env, exports } from 'cloudflare:workers';
import { describe, expect, it, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { loadedPolicy } from '../../worker/policy/loaded';
import { adminFetch, bearer } from '../helpers/admin';
import { detailOf, sendAudited } from '../helpers/audit';
import { DEMO_AGENT, ISSUER } from '../helpers/demo';
import { expectError } from '../helpers/requests';

interface AgentJson {
  agent: string;
  owner: string;
  labels: string[];
  attestation: Record<string, unknown>;
  dpop_required: boolean;
  suspended: boolean;
  revoked_before: string | null;
  last_change: { action: string; by: string; reason: string; at: string } | null;
}

async function listAgents(query = '', credential = creds.auditor) {
  const response = await adminFetch(`/admin/agents${query}`, { headers: bearer(credential) });
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as { agents: AgentJson[]; next_cursor: string | null };
}

const INVENTORY = Object.keys(loadedPolicy().bundle.agents).sort();

describe('GET /admin/agents', () => {
  it('lists every agent of the inventory, sorted, with owner, attestation method, labels and DPoP', async () => {
    const { agents, next_cursor } = await listAgents();
    expect(agents.map((agent) => agent.agent)).toEqual(INVENTORY);
    expect(next_cursor).toBeNull();
    const byId = new Map(agents.map((agent) => [agent.agent, agent]));
    expect(byId.get(DEMO_AGENT)).toMatchObject({
      owner: 'alice@example.com',
      labels: ['support', 'security'],
      attestation: { method: 'self_signed', keys: ['demo-agent-1'] },
      dpop_required: false,
    });
    expect(byId.get('attack-path-scanner')).toMatchObject({
      owner: 'dave@example.com',
      attestation: { method: 'issuer', issuer: 'spire', subject: 'spiffe://acme.example/agents/attack-path-scanner' },
      dpop_required: true,
    });
  });

  it('shows live state: who suspended an agent, when and why, and that a suspension revokes nothing', async () => {
    const suspended = await adminFetch('/admin/agents/graph-indexer/suspend', {
      method: 'POST',
      headers: bearer(creds.admin),
      body: { reason: 'INC-9: looping' },
    });
    expect(suspended.status).toBe(200);
    const listed = (await listAgents()).agents.find((agent) => agent.agent === 'graph-indexer');
    expect(listed).toMatchObject({
      suspended: true,
      last_change: { action: 'suspend', by: 'demo-admin', reason: 'INC-9: looping' },
    });
    expect(listed?.revoked_before).toBeNull();
    const resumed = await adminFetch('/admin/agents/graph-indexer/resume', {
      method: 'POST',
      headers: bearer(creds.admin),
      body: { reason: 'fixed' },
    });
    expect(resumed.status).toBe(200);
    const after = (await listAgents()).agents.find((agent) => agent.agent === 'graph-indexer');
    expect(after).toMatchObject({ suspended: false, last_change: { action: 'resume', reason: 'fixed' } });
  });

  it('pages with limit and next_cursor, and audits each page', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `?limit=1${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`;
      const { response, audit } = await sendAudited(() =>
        adminFetch(`/admin/agents${query}`, { headers: bearer(creds.admin) }),
      );
      expect(audit).toMatchObject({ event: 'admin.agent.list', decision: 'granted', actor: 'demo-admin' });
      const page = (await response.json()) as { agents: AgentJson[]; next_cursor: string | null };
      expect(page.agents).toHaveLength(1);
      expect(detailOf(audit)).toMatchObject({ count: 1 });
      seen.push(...page.agents.map((agent) => agent.agent));
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(seen).toEqual(INVENTORY);
  });

  it.each([
    { name: 'a limit of 0', query: '?limit=0', field: 'limit' },
    { name: 'a limit above 500', query: '?limit=501', field: 'limit' },
    { name: 'a limit that is not a number', query: '?limit=ten', field: 'limit' },
    { name: 'an unknown parameter', query: '?owner=alice', field: 'query' },
  ])('refuses $name with invalid_request naming the field', async ({ query, field }) => {
    const response = await adminFetch(`/admin/agents${query}`, { headers: bearer(creds.admin) });
    const body = await expectError(response, 400, 'invalid_request');
    expect(body.error_description).toContain(field);
  });

  it('answers 503 when an agent object does not answer, and lists nothing', async () => {
    const get = vi.spyOn(env.AGENT_STATE, 'get').mockImplementation(() => {
      throw new Error('agent objects unavailable');
    });
    try {
      const response = await adminFetch('/admin/agents', { headers: bearer(creds.admin) });
      await expectError(response, 503, 'temporarily_unavailable');
    } finally {
      get.mockRestore();
    }
  });
});

describe('GET /healthz', () => {
  it('answers ok with the issuer and the policy version, touching no store', async () => {
    const spies = [
      vi.spyOn(env.AGENT_STATE, 'get'),
      vi.spyOn(env.KILL_SWITCH_SHARDS, 'get'),
      vi.spyOn(env.SIGNING_KEYS, 'get'),
      vi.spyOn(env.AUDIT_DB, 'prepare'),
    ];
    try {
      const response = await exports.default.fetch(`${ISSUER}/healthz`);
      expect(response.status).toBe(200);
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(await response.json()).toEqual({
        status: 'ok',
        issuer: ISSUER,
        policy: loadedPolicy().bundle.version,
      });
      for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});
