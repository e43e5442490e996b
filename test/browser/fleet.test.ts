/**
 * The console for a fleet, on a broker of its own whose policy holds 300 agents more than `policies/`
 * (varied in labels, owners and review dates). The access review: the chart keeps to the 20 agents with the
 * most entitlements never used, each lifecycle tile names 12 and counts the rest, and the agents' cards come
 * 50 at a time, found by id or owner and narrowed to those needing attention; checked against the broker's
 * own `GET /admin/review`. The approvals: more pending requests than a page holds, all reached with "Show
 * more".
 */
import { selfSigned } from '@tessera/agent';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BenchAgent, benchAgents, benchPolicies } from '../../scripts/bench/fixtures';
import { type LocalBroker, startLocalBroker } from '../../scripts/lib/local-broker';
import { utcDay } from '../../worker/core/lifecycle';
import { CREDENTIALS, chartData, openApproval, taskId, useBrowser } from './console';

const people = useBrowser();

const FLEET = 300;
const DAY_MS = 86_400_000;

interface AgentReview {
  agent: string;
  owner: string;
  past_review: boolean;
  expired: boolean;
  stale: boolean;
  orphaned: boolean;
  entitlements: { used: boolean }[];
}
interface Review {
  agents: AgentReview[];
  stale: string[];
  past_review: string[];
}

let fleet: { dir: string; dispose(): Promise<void> };
let agents: BenchAgent[];
let broker: LocalBroker;

beforeAll(async () => {
  agents = await benchAgents(FLEET);
  // `policies/` with the fleet added: a third labelled support, a third security, every tenth past review.
  fleet = await benchPolicies(agents, (agent, n) => ({
    id: agent.id,
    owner: `team-${n % 7}@example.com`,
    description: 'One of the fleet of the review page test',
    labels: [['support'], ['security'], []][n % 3],
    review_by: utcDay(Date.now() + (n % 10 === 0 ? -DAY_MS : 90 * DAY_MS)),
    attestation: { self_signed: { keys: [agent.publicJwk] } },
  }));
  broker = await startLocalBroker({ policyDir: fleet.dir });
}, 120_000);
afterAll(async () => {
  await broker?.dispose();
  await fleet?.dispose();
});

async function review(): Promise<Review> {
  const response = await fetch(`${broker.url}/admin/review?days=90`, {
    headers: { authorization: `Bearer ${CREDENTIALS.auditor}` },
  });
  expect(response.status).toBe(200);
  return (await response.json()) as Review;
}

const unusedCount = (agent: AgentReview) => agent.entitlements.filter((e) => !e.used).length;

describe('the console: the access review of a fleet', () => {
  it('charts the 20 agents with the most never used, counts what the tiles do not name, and pages the cards', async () => {
    const answer = await review();
    expect(answer.agents.length).toBeGreaterThan(FLEET);
    const { page } = await people.signedIn('auditor', `${broker.url}/console/`);
    await page.locator('#nav a', { hasText: 'Review' }).click();
    await page.getByRole('heading', { name: 'Access review', level: 1 }).waitFor();
    const agents = page.getByTestId('review-agents');
    await agents.locator('article[data-agent]').first().waitFor();

    const chart = await chartData(page, 'chart-entitlements');
    expect(chart.labels).toHaveLength(20);
    const fewest = Math.min(...(chart.datasets['Never used'] ?? []));
    const left = answer.agents.filter((a) => !chart.labels.includes(a.agent));
    expect(Math.max(...left.map(unusedCount))).toBeLessThanOrEqual(fewest);
    expect(await page.getByTestId('chart-entitlements').textContent()).toContain(
      `the 20 of ${answer.agents.length} agents with the most never used`,
    );

    const pastReview = page.getByTestId('flag-past_review');
    expect(await pastReview.locator('.figure').textContent()).toBe(String(answer.past_review.length));
    expect(await pastReview.locator('li').allTextContents()).toEqual(answer.past_review.slice(0, 12));
    expect(await page.getByTestId('flag-past_review-more').textContent()).toBe(
      `and ${answer.past_review.length - 12} more`,
    );

    const cards = agents.locator('article[data-agent]');
    const count = page.getByTestId('review-count');
    expect(await cards.count()).toBe(50);
    expect(await count.textContent()).toBe(`50 of ${answer.agents.length} agents shown`);
    await page.getByRole('button', { name: 'Show more' }).click();
    await count.filter({ hasText: `100 of ${answer.agents.length}` }).waitFor();
    expect(await cards.count()).toBe(100);

    const team = answer.agents.filter((a) => a.owner === 'team-3@example.com');
    await page.getByLabel('Find').fill('TEAM-3@');
    await count.filter({ hasText: `of ${team.length} agents shown` }).waitFor();
    expect(await cards.evaluateAll((all) => all.map((card) => card.getAttribute('data-agent')))).toEqual(
      team.slice(0, 50).map((a) => a.agent),
    );

    await page.getByLabel('Find').fill('');
    await page.getByLabel('Show').selectOption('attention');
    const attention = answer.agents.filter(
      (a) => a.past_review || a.expired || a.stale || a.orphaned || unusedCount(a) > 0,
    );
    await count.filter({ hasText: `of ${attention.length} agents shown` }).waitFor();
    expect(await cards.count()).toBe(Math.min(50, attention.length));
  });
});

describe('the console: the approvals of a fleet', () => {
  it('shows 50 pending requests, and every one of 57 with "Show more"', async () => {
    // Three security agents ask 19 times each: within each one's burst of 20, more than a page of 50.
    const askers = agents
      .filter((_, n) => n % 3 === 1)
      .slice(0, 3)
      .map((agent) => ({
        broker: broker.url,
        attestation: selfSigned({ agent: agent.id, key: { key: agent.privateKey, kid: String(agent.publicJwk.kid) } }),
      }));
    const opened: string[] = [];
    for (const asker of askers) {
      for (let i = 0; i < 19; i += 1) {
        const task = {
          id: taskId('fleet-approval'),
          description: `Disable account ${i} of incident INC-90`,
          justification: 'the SOC confirmed the takeover',
        };
        opened.push(await openApproval(task, undefined, asker));
      }
    }
    // The listing reads the approvals' records in D1, which arrive a moment after the requests.
    const listed = async () => {
      const response = await fetch(`${broker.url}/admin/approvals?status=pending&limit=200`, {
        headers: { authorization: `Bearer ${CREDENTIALS.approver}` },
      });
      const { approvals } = (await response.json()) as { approvals: { id: string }[] };
      return approvals.filter((approval) => opened.includes(approval.id)).length;
    };
    for (let deadline = Date.now() + 30_000; (await listed()) < opened.length; ) {
      if (Date.now() > deadline) throw new Error('the approvals did not reach the listing');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const { page } = await people.signedIn('approver', `${broker.url}/console/`);
    const cards = page.locator('article[data-approval]');
    await cards.first().waitFor();
    expect(await cards.count()).toBe(50);
    await page.getByRole('button', { name: 'Show more' }).click();
    await cards.nth(56).waitFor();
    expect((await cards.evaluateAll((all) => all.map((card) => card.getAttribute('data-approval')))).sort()).toEqual(
      [...opened].sort(),
    );
    expect(await page.getByRole('button', { name: 'Show more' }).count()).toBe(0);
  });
});
