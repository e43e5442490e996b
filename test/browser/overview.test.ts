/**
 * The Overview: what the fleet did, drawn from tokens the demo agent really got and was really refused by
 * the local broker, and the kill switch, approvals and audit log beside it. Other files share the broker, so
 * the charts are checked against the broker's own counts, which must include this file's requests.
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import {
  adminApi,
  agentAsks,
  agentAsksForTickets,
  chartData,
  openApproval,
  screenshot,
  TICKETS,
  taskId,
  useBrowser,
} from './console';

const people = useBrowser();

interface Tally {
  issued: number;
  refused: number;
  approvals_asked: number;
}
interface Usage {
  totals: Tally;
  series: (Tally & { day: string })[];
  refusals_by_reason: { reason: string; count: number }[];
  top_agents: (Tally & { agent: string })[];
}

const usage = async () => (await adminApi('auditor', '/admin/usage?days=30')).body as unknown as Usage;

/** The broker's counts once they hold `atLeast` more than `before`, and stopped changing for a second. */
async function settledUsage(before: Tally, atLeast: Tally): Promise<Usage> {
  const deadline = Date.now() + 30_000;
  let last = await usage();
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const now = await usage();
    const arrived = (['issued', 'refused', 'approvals_asked'] as const).every(
      (k) => now.totals[k] >= before[k] + atLeast[k],
    );
    if (arrived && JSON.stringify(now) === JSON.stringify(last)) return now;
    if (Date.now() > deadline) throw new Error(`the counts did not arrive: ${JSON.stringify(now.totals)}`);
    last = now;
  }
}

/** Whether the canvas has anything drawn on it (not one colour all over). */
function painted(page: Page, testid: string) {
  return page
    .getByTestId(testid)
    .locator('canvas')
    .evaluate((canvas) => {
      const { width, height } = canvas as HTMLCanvasElement;
      const pixels = (canvas as HTMLCanvasElement).getContext('2d')?.getImageData(0, 0, width, height).data;
      return pixels?.some((value, i) => i % 4 === 3 && value !== pixels[3]) === true;
    });
}

describe('the console: the Overview', () => {
  it('draws the tokens issued and refused, the refusals by reason and the top agents from what the broker decided', async () => {
    const before = (await usage()).totals;
    for (let n = 0; n < 3; n++) expect((await agentAsksForTickets(`overview-${n}`)).status).toBe(200);
    const refusedTask = taskId('overview-refused');
    for (let n = 0; n < 2; n++) {
      const refused = await agentAsks({
        audience: TICKETS,
        scope: 'tickets:delete',
        task: { id: refusedTask, description: 'Delete ticket T-1234' },
      });
      expect([refused.status, refused.body.error]).toEqual([400, 'invalid_scope']);
    }
    await openApproval({
      id: taskId('overview-approval'),
      description: 'Disable the account of j.doe',
      justification: 'the SOC confirmed the takeover',
    });
    const counts = await settledUsage(before, { issued: 3, refused: 2, approvals_asked: 1 });
    const audit = await adminApi('auditor', `/admin/audit?task=${refusedTask}`);
    const reason = String((audit.body.records as { reason: string }[])[0]?.reason);

    const tab = await people.signedIn('admin');
    const { page } = tab;
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
    await page.getByText(/^Updated/).waitFor();

    const overTime = await chartData(page, 'chart-over-time');
    expect(overTime.labels).toHaveLength(30);
    expect(overTime.datasets.Issued).toEqual(counts.series.map((day) => day.issued));
    expect(overTime.datasets.Refused).toEqual(counts.series.map((day) => day.refused));
    expect(overTime.datasets['Approval asked']).toEqual(counts.series.map((day) => day.approvals_asked));
    expect(overTime.datasets.Issued?.at(-1)).toBeGreaterThanOrEqual(3);
    expect(await page.getByTestId('chart-over-time-summary').textContent()).toContain(
      `${counts.totals.issued} tokens issued, ${counts.totals.refused} refused`,
    );

    const reasons = await chartData(page, 'chart-reasons');
    expect(reasons.labels).toEqual(counts.refusals_by_reason.map((r) => r.reason));
    expect(reasons.labels).toContain(reason);
    expect(await page.getByTestId('chart-reasons-summary').textContent()).toContain(reason);

    const agents = await chartData(page, 'chart-agents');
    expect(agents.labels).toContain('demo-agent');
    const demo = agents.labels.indexOf('demo-agent');
    const demoCounts = counts.top_agents.find((a) => a.agent === 'demo-agent');
    expect([agents.datasets.Issued?.[demo], agents.datasets.Refused?.[demo]]).toEqual([
      demoCounts?.issued,
      demoCounts?.refused,
    ]);

    for (const chart of ['chart-over-time', 'chart-reasons', 'chart-agents']) {
      expect(await painted(page, chart), chart).toBe(true);
      expect(await page.getByTestId(chart).getByRole('img').getAttribute('aria-describedby')).toBe(
        await page.getByTestId(`${chart}-summary`).getAttribute('id'),
      );
    }

    expect(await page.getByTestId('tile-kill-switch').textContent()).toContain('Released: tokens are issued');
    // Every page's approvals counted per agent where the listing does, else the first page's.
    const pending = (await adminApi('auditor', '/admin/approvals?status=pending')).body as {
      approvals: unknown[];
      agents?: { count: number }[];
    };
    const waiting = pending.agents?.reduce((sum, agent) => sum + agent.count, 0) ?? pending.approvals.length;
    expect(await page.getByTestId('tile-approvals').locator('.figure').textContent()).toMatch(
      new RegExp(`^${waiting}\\+?$`),
    );
    expect(await page.getByTestId('tile-approvals').textContent()).toContain('Oldest waiting');
    expect(await page.getByTestId('tile-audit').textContent()).toMatch(/Hot window: \d+ % of its budget/);

    await page.getByRole('button', { name: 'Verify the chain' }).click();
    await page
      .getByTestId('chain-state')
      .filter({ hasText: /^Holds: \d+ records? checked/ })
      .waitFor();
    await screenshot(page, 'overview', { fullPage: true });
  });

  it('shows an engaged kill switch, and is not offered to an approver', async () => {
    await adminApi('admin', '/admin/kill-switch', {
      method: 'PUT',
      body: { engaged: true, reason: 'overview test' },
    });
    try {
      const auditor = await people.signedIn('auditor');
      await auditor.page.getByText(/^Updated/).waitFor();
      expect(await auditor.page.getByTestId('tile-kill-switch').textContent()).toContain('Engaged: no token is issued');
    } finally {
      await adminApi('admin', '/admin/kill-switch', {
        method: 'PUT',
        body: { engaged: false, reason: 'overview test ends' },
      });
    }
    const approver = await people.signedIn('approver');
    expect(await approver.page.locator('#nav a').allTextContents()).toEqual(['Approvals']);
    await approver.page.getByRole('heading', { name: 'Approvals', level: 1 }).waitFor();
  });
});
