/**
 * `GET /admin/review` and the review it is built from (`worker/policy/review.ts`): a seeded fleet, counted
 * in `usage_daily` as the audit writer's trigger counts it, with an unused entitlement, stale agents and an
 * agent past its review date (dates from the clock); the entitlements come from the Cedar engine.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { dayWindow, usageIn } from '../../worker/audit/usage';
import { pastReview, utcDay } from '../../worker/core/lifecycle';
import type { PolicyBundle } from '../../worker/policy/bundle';
import { loadedPolicy } from '../../worker/policy/loaded';
import { type AgentReview, accessReview, type Review } from '../../worker/policy/review';
import { adminFetch, bearer } from '../helpers/admin';
import { drainAudit } from '../helpers/audit';
import { DEMO_AGENT, GRAPH, IAM, TICKETS } from '../helpers/demo';
import { expectError } from '../helpers/requests';
import { issue } from '../helpers/tokens';

const DAY_MS = 86_400_000;

/** Counts as the trigger keeps them, `daysAgo` days back. */
async function seed(daysAgo: number, agent: string, audience: string, actions: string, outcome: string, n: number) {
  await env.AUDIT_DB.prepare(
    `INSERT INTO usage_daily (day, agent, audience, actions, outcome, reason, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT DO UPDATE SET count = count + excluded.count`,
  )
    .bind(
      utcDay(Date.now() - daysAgo * DAY_MS),
      agent,
      audience,
      actions,
      outcome,
      outcome === 'refused' ? 'rate_limited' : '',
      n,
    )
    .run();
}

async function getReview(query = '', credential = creds.auditor): Promise<Review> {
  const response = await adminFetch(`/admin/review${query}`, { headers: bearer(credential) });
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as Review;
}

const agentOf = (review: Review, id: string) => review.agents.find((a) => a.agent === id) as AgentReview;

describe('the access review of a seeded fleet', () => {
  it('finds the unused entitlement, the stale agents and the agent past review', async () => {
    const now = Date.now();
    // The demo agent used tickets and IAM reads, never graph:read; graph-indexer read the graph 100 days
    // ago only (outside the window): stale. release-bot's review date was yesterday.
    await seed(2, DEMO_AGENT, TICKETS, 'tickets:read tickets:comment', 'granted', 5);
    await seed(3, DEMO_AGENT, TICKETS, 'tickets:close', 'granted', 1);
    await seed(3, DEMO_AGENT, TICKETS, 'tickets:read', 'refused', 4);
    await seed(4, DEMO_AGENT, GRAPH, 'graph:attack-path', 'granted', 2);
    await seed(4, DEMO_AGENT, IAM, 'iam:read-user iam:disable-user', 'approval_asked', 1);
    await seed(4, DEMO_AGENT, IAM, 'iam:read-user iam:disable-user', 'approved', 1);
    await seed(4, DEMO_AGENT, IAM, 'iam:read-user iam:disable-user', 'granted', 1);
    await seed(5, DEMO_AGENT, 'https://payments.example.com', 'payments:refund', 'granted', 1);
    await seed(100, 'graph-indexer', GRAPH, 'graph:read', 'granted', 50);
    await seed(1, 'release-bot', TICKETS, 'tickets:comment', 'granted', 3);
    const { bundle, engine } = loadedPolicy();
    const release = bundle.agents['release-bot'];
    if (release === undefined) throw new Error('release-bot is not in the policy');
    // Review dates from the clock: the others' a month ahead, release-bot's yesterday.
    const ahead = Object.fromEntries(
      Object.entries(bundle.agents).map(([id, agent]) => [id, { ...agent, reviewBy: utcDay(now + 30 * DAY_MS) }]),
    );
    const seeded: PolicyBundle = {
      ...bundle,
      agents: { ...ahead, 'release-bot': { ...release, reviewBy: utcDay(now - DAY_MS) } },
    };
    const window = dayWindow(90, now);
    const review = accessReview(engine, seeded, await usageIn(env.AUDIT_DB, window), new Map(), window, now);

    const demo = agentOf(review, DEMO_AGENT);
    expect(demo.unused).toEqual([{ audience: GRAPH, action: 'graph:read', condition: 'allowed' }]);
    expect(demo.entitlements.find((e) => e.action === 'tickets:close')).toMatchObject({
      condition: 'allowed',
      hours: 'some_hours',
      granted: 1,
    });
    expect(demo.entitlements.find((e) => e.action === 'graph:attack-path')).toMatchObject({
      condition: 'justification',
      granted: 2,
    });
    expect(demo.entitlements.find((e) => e.action === 'iam:disable-user')).toMatchObject({
      condition: 'justification_and_approval',
      grants: ['disable-user-after-approval'],
    });
    expect(demo.entitlements.some((e) => e.action === 'iam:rotate-key')).toBe(false);
    expect(demo).toMatchObject({
      tokens: 10,
      stale: false,
      orphaned: false,
      last_token_day: utcDay(now - 2 * DAY_MS),
      refusals: [{ reason: 'rate_limited', count: 4 }],
      approvals: { asked: 1, approved: 1, denied: 0 },
    });
    expect(review.stale).toEqual(['attack-path-scanner', 'graph-indexer']);
    expect(review.past_review).toEqual(['release-bot']);
    // Owners whose Access role is not admin or approver (bob, carol and dave are auditors by the glob).
    expect(review.orphaned).toEqual(['attack-path-scanner', 'graph-indexer', 'release-bot']);
    expect(agentOf(review, 'graph-indexer').unused).toEqual([
      { audience: GRAPH, action: 'graph:read', condition: 'allowed' },
    ]);
    expect(review.narrowing?.forbids).toBe(review.agents.reduce((n, agent) => n + agent.unused.length, 0));
    expect(review.narrowing?.cedar).toContain(
      `principal == Agent::"${DEMO_AGENT}",\n  action == Action::"graph:read",\n  resource == Api::"${GRAPH}"`,
    );
  });
});

describe('GET /admin/review', () => {
  it('reviews every agent of the inventory over 90 days by default, with its last token', async () => {
    await issue();
    await drainAudit();
    const review = await getReview();
    const now = Date.now();
    expect(review).toMatchObject({ days: 90, to: utcDay(now), from: utcDay(now - 89 * DAY_MS) });
    expect(review.agents.map((a) => a.agent)).toEqual(Object.keys(loadedPolicy().bundle.agents).sort());
    const demo = agentOf(review, DEMO_AGENT);
    expect(demo.owner).toBe('alice@example.com');
    expect(demo.attestation).toBe('self_signed');
    expect(Date.parse(demo.last_token_at ?? '')).toBeGreaterThan(now - 60_000);
    expect(agentOf(review, 'release-bot').attestation).toBe('issuer:github-actions');
    // Lifecycle flags follow the policy's dates and the clock, today or a year ahead.
    for (const agent of review.agents) {
      const declared = loadedPolicy().bundle.agents[agent.agent];
      if (declared === undefined) throw new Error(`${agent.agent} is not in the policy`);
      expect(agent.past_review).toBe(pastReview(declared, now));
    }
    expect((await getReview('?days=7')).days).toBe(7);
  });

  it('refuses a bad query with invalid_request, and roles that may not read it', async () => {
    for (const query of ['?days=0', '?days=400', '?days=x', '?agent=demo-agent']) {
      await expectError(
        await adminFetch(`/admin/review${query}`, { headers: bearer(creds.auditor) }),
        400,
        'invalid_request',
      );
    }
    await expectError(
      await adminFetch('/admin/review', { headers: bearer(creds.approver) }),
      403,
      'insufficient_scope',
    );
  });
});
