/**
 * `GET /admin/approvals`, paged: 205 approvals opened by the demo agent (its rate limit raised for the flood)
 * and one by another agent (opened in its object directly: its attestation comes from SPIRE) must all be
 * reachable across pages, each once, oldest first, and the other agent's must not drown in the flood.
 *
 * The approvals are opened a day ahead of the real clock, as in step-up.test.ts: the agents' objects set their
 * webhook alarms on that clock, so no delivery runs behind the tests' back.
 */

import { base64url } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { pendingApproval } from '../../worker/approvals/step-up';
import { approvalTerms, newApprovalId } from '../../worker/core/approval';
import { inventoryAgent } from '../../worker/policy/bundle';
import { loadedPolicy } from '../../worker/policy/loaded';
import { adminFetch, bearer } from '../helpers/admin';
import { agentObject, testDraft } from '../helpers/agent-object';
import { DISABLE_USER, incidentTask, openApproval } from '../helpers/approvals';
import { drainAudit } from '../helpers/audit';
import { nowSeconds, useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, IAM, ISSUER } from '../helpers/demo';
import { expectError } from '../helpers/requests';

const DAY_MS = 24 * 3600 * 1000;
const FLOOD = 205;
const OTHER_AGENT = 'attack-path-scanner';
/** Requests of the flood in flight at once. */
const IN_FLIGHT = 8;

const { bundle } = loadedPolicy();
const savedRateLimit = { ...bundle.settings.rateLimit };
const flood: string[] = [];
let otherId: string;

interface Listing {
  approvals: { id: string; agent: string; status: string; created_at: string }[];
  next_cursor: string | null;
  agents: { agent: string; count: number }[];
}

/** Opens one approval of `OTHER_AGENT` in its object, as the `/token` pipeline would for it. */
async function openOtherApproval(): Promise<string> {
  const agent = inventoryAgent(bundle, OTHER_AGENT);
  if (agent === undefined) throw new Error(`${OTHER_AGENT} is not in the demo policy`);
  const now = nowSeconds();
  const task = incidentTask();
  const { approval } = pendingApproval(bundle, {
    id: newApprovalId(OTHER_AGENT),
    agent,
    terms: approvalTerms({
      audience: IAM,
      actions: [DISABLE_USER],
      requestedTtl: undefined,
      taskId: task.id ?? 'task',
      taskHash: 'hash',
      justification: task.justification,
    }),
    requirement: { count: 1, groups: ['security'], fourEyes: true, actions: [DISABLE_USER], rollback: [] },
    ttl: 120,
    taskDescription: task.description,
    issuer: ISSUER,
    now,
  });
  const answer = await agentObject(OTHER_AGENT).exchange({
    draft: { ...testDraft('token.exchange', OTHER_AGENT), target: `approval:${approval.id}` },
    admission: {
      replayKey: `test\n${crypto.randomUUID()}`,
      replayUntil: now + 300,
      taskId: approval.terms.taskId,
      rateLimit: savedRateLimit,
    },
    decision: { kind: 'open', approval },
  });
  expect(answer).toMatchObject({ outcome: 'recorded' });
  return approval.id;
}

beforeAll(async () => {
  // The flood is within the agent's rate limit: the limit is raised for it, as an agent's own may be.
  Object.assign(bundle.settings.rateLimit, { perMinute: 6000, burst: FLOOD + 10 });
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(Date.now() + DAY_MS);
  try {
    otherId = await openOtherApproval();
    for (let next = 0; next < FLOOD; next += IN_FLIGHT) {
      const batch = Array.from({ length: Math.min(IN_FLIGHT, FLOOD - next) }, () => openApproval());
      flood.push(...(await Promise.all(batch)).map((pending) => pending.id));
    }
    await drainAudit();
  } finally {
    vi.useRealTimers();
  }
}, 300_000);

afterAll(() => {
  Object.assign(bundle.settings.rateLimit, savedRateLimit);
});

useForwardClock(DAY_MS);

function list(query: string, credential = creds.approver): Promise<Response> {
  return adminFetch(`/admin/approvals${query}`, { headers: bearer(credential) });
}

async function listed(query: string): Promise<Listing> {
  const response = await list(query);
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as Listing;
}

/** Every page of a listing, following `next_cursor` from the first page until it is null. */
async function walk(params: Record<string, string> = {}): Promise<Listing[]> {
  const pages: Listing[] = [];
  let cursor: string | null = null;
  do {
    const query = new URLSearchParams({ ...params, ...(cursor !== null && { cursor }) });
    const page = await listed(`?${query}`);
    pages.push(page);
    cursor = page.next_cursor;
    expect(pages.length).toBeLessThan(50);
  } while (cursor !== null);
  return pages;
}

const idsOf = (pages: readonly Listing[]) => pages.flatMap((page) => page.approvals.map((approval) => approval.id));

describe('GET /admin/approvals, paged', () => {
  it('reaches every pending approval exactly once across pages, the other agent’s among them', async () => {
    const pages = await walk({ status: 'pending', limit: '50' });
    const ids = idsOf(pages);
    expect(ids).toHaveLength(FLOOD + 1);
    expect(new Set(ids)).toEqual(new Set([...flood, otherId]));
    expect(pages.slice(0, -1).every((page) => page.approvals.length === 50)).toBe(true);
    for (const page of pages) expect(page.approvals.every((approval) => approval.status === 'pending')).toBe(true);
  });

  it('lists the oldest first, in the same order on every walk', async () => {
    const first = idsOf(await walk({ limit: '37' }));
    expect(idsOf(await walk({ limit: '200' }))).toEqual(first);
    // In the order their records reached the audit log: the flood batch after batch (in any order within a
    // batch, whose requests run at once).
    const batches = first.filter((id) => id !== otherId).map((id) => Math.floor(flood.indexOf(id) / IN_FLIGHT));
    expect(batches).toEqual([...batches].sort((a, b) => a - b));
  });

  it('counts each agent’s pending approvals on every page, so a flood hides no other agent', async () => {
    const page = await listed('?limit=1');
    expect(page.approvals).toHaveLength(1);
    expect(page.agents).toEqual([
      { agent: DEMO_AGENT, count: FLOOD },
      { agent: OTHER_AGENT, count: 1 },
    ]);
  });

  it('lists one agent’s approvals alone with agent=', async () => {
    const page = await listed(`?agent=${OTHER_AGENT}`);
    expect(page.approvals.map((approval) => approval.id)).toEqual([otherId]);
    expect(page.next_cursor).toBeNull();
    expect(page.agents).toEqual([{ agent: OTHER_AGENT, count: 1 }]);
    const demo = await walk({ agent: DEMO_AGENT, limit: '200' });
    expect(new Set(idsOf(demo))).toEqual(new Set(flood));
    expect(await listed('?agent=nobody')).toEqual({ approvals: [], next_cursor: null, agents: [] });
  });

  it('keeps a walk whole when an approval on a page already read is decided', async () => {
    const first = await listed('?limit=100');
    const decided = first.approvals[10]?.id ?? '';
    const response = await adminFetch(`/admin/approvals/${decided}`, {
      method: 'POST',
      body: { decision: 'deny', reason: 'not this account' },
      headers: bearer(creds.approver),
    });
    expect(response.status, await response.clone().text()).toBe(200);
    await drainAudit();
    const rest = await walk({ cursor: first.next_cursor ?? '', limit: '100' });
    const seen = [...first.approvals.map((approval) => approval.id), ...idsOf(rest)];
    expect(seen).toHaveLength(FLOOD + 1);
    expect(new Set(seen)).toEqual(new Set([...flood, otherId]));
    expect(idsOf(await walk())).not.toContain(decided);
    expect(idsOf(await walk({ status: 'denied' }))).toEqual([decided]);
  });
});

describe('GET /admin/approvals, refused queries', () => {
  const seqCursor = (text: string) => base64url.encode(text);
  const cases = {
    'a cursor that is not one': '?cursor=not-a-cursor',
    'a cursor of the audit listing': '?cursor=12',
    'a cursor naming no record': `?cursor=${seqCursor('approvals:0')}`,
    'a cursor of another listing': `?cursor=${seqCursor('audit:12')}`,
    'a cursor that is too long': `?cursor=${'A'.repeat(100)}`,
    'a limit of 0': '?limit=0',
    'a limit above the maximum': '?limit=201',
    'a limit that is not a number': '?limit=ten',
    'an unknown status': '?status=open',
    'an unknown parameter': '?page=2',
  };
  for (const [name, query] of Object.entries(cases)) {
    it(`refuses ${name} with invalid_request`, async () => {
      const body = await expectError(await list(query), 400, 'invalid_request');
      expect(body.error_description).toMatch(/^(invalid|unknown parameter) /);
    });
  }
});
