/**
 * The access review page: what each agent may be granted beside what it was granted, from a token the demo
 * agent really got, the entitlements it never used, the lifecycle flags, and the suggested narrowing an
 * admin copies. Checked against the broker's own `GET /admin/review`.
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { adminApi, agentAsksForTickets, BROKER, chartData, screenshot, TICKETS, useBrowser } from './console';

const people = useBrowser();

interface Entitlement {
  audience: string;
  action: string;
  granted: number;
  used: boolean;
}
interface AgentReview {
  agent: string;
  entitlements: Entitlement[];
  stale: boolean;
}
interface Review {
  agents: AgentReview[];
  stale: string[];
  narrowing: { file: string; diff: string } | null;
}

const review = async () => (await adminApi('auditor', '/admin/review?days=90')).body as unknown as Review;
const demoAgent = (answer: Review) => answer.agents.find((a) => a.agent === 'demo-agent');

/** The review once the demo agent's ticket comments are counted, and it stopped changing for a second. */
async function settledReview(): Promise<Review> {
  const deadline = Date.now() + 30_000;
  let last = await review();
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const now = await review();
    const counted = demoAgent(now)?.entitlements.some((e) => e.action === 'tickets:comment' && e.used) === true;
    if (counted && JSON.stringify(now) === JSON.stringify(last)) return now;
    if (Date.now() > deadline) throw new Error('the demo agent’s token is not in the review');
    last = now;
  }
}

/** The cells of the entitlement row of `agent` for `action` on `audience`. */
function row(page: Page, agent: string, audience: string, action: string) {
  return page.locator(`article[data-agent="${agent}"] tr[data-entitlement="${audience} ${action}"]`);
}

describe('the console: the access review', () => {
  it('shows an entitlement the demo agent never used beside one it used, the lifecycle flags, and the narrowing to copy', async () => {
    expect((await agentAsksForTickets('review-used')).status).toBe(200);
    const answer = await settledReview();
    const demo = demoAgent(answer) as AgentReview;
    const unused = demo.entitlements.find((e) => !e.used);
    if (unused === undefined) throw new Error('the demo agent used every entitlement: nothing to show unused');
    const comment = demo.entitlements.find((e) => e.action === 'tickets:comment' && e.audience === TICKETS);

    const tab = await people.signedIn('admin');
    const { page, context } = tab;
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BROKER });
    await page.locator('#nav a', { hasText: 'Review' }).click();
    await page.getByRole('heading', { name: 'Access review', level: 1 }).waitFor();
    const card = page.locator('article[data-agent="demo-agent"]');
    await card.waitFor();

    const never = row(page, 'demo-agent', unused.audience, unused.action);
    expect(await never.getAttribute('class')).toBe('unused');
    expect(await never.locator('td').last().textContent()).toBe('never used');
    const used = row(page, 'demo-agent', TICKETS, 'tickets:comment');
    expect(await used.getAttribute('class')).toBe('used');
    expect(await used.locator('td').last().textContent()).toBe(String(comment?.granted));
    expect(await card.locator('tr[data-entitlement]').count()).toBe(demo.entitlements.length);

    const stale = await page.getByTestId('flag-stale').locator('li').allTextContents();
    expect(stale).toEqual(answer.stale);
    expect(stale).not.toContain('demo-agent');

    const chart = await chartData(page, 'chart-entitlements');
    expect(chart.labels).toEqual(answer.agents.map((a) => a.agent));
    expect(chart.datasets['Never used']).toEqual(
      answer.agents.map((a) => a.entitlements.filter((e) => !e.used).length),
    );
    expect(await page.getByTestId('chart-entitlements-summary').textContent()).toContain(
      `demo-agent: ${demo.entitlements.length - demo.entitlements.filter((e) => !e.used).length} used`,
    );

    const narrowing = answer.narrowing;
    if (narrowing === null) throw new Error('an unused entitlement and no narrowing');
    const diff = page.getByTestId('narrowing-diff');
    expect(await diff.textContent()).toBe(narrowing.diff);
    expect(narrowing.diff).toContain(`action == Action::"${unused.action}"`);
    await page.getByRole('button', { name: 'Copy the diff' }).click();
    await page.getByRole('status').filter({ hasText: 'Copied.' }).waitFor();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(narrowing.diff);
    await screenshot(page, 'review', { fullPage: true });
  });
});
