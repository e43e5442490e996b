/**
 * The on-call pages: the kill switch, the agents, the audit log, and what an auditor is (not) offered. Each
 * scenario checks in the browser what a person sees, and against the broker what it did.
 */
import { afterAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  agentAsksForTickets,
  openApproval,
  refreshUntil,
  screenshot,
  type Tab,
  taskId,
  useBrowser,
} from './console';

const people = useBrowser();

afterAll(async () => {
  // Whatever happened, leave the broker issuing for the next file.
  await adminApi('admin', '/admin/kill-switch', {
    method: 'PUT',
    body: { engaged: false, reason: 'browser tests end' },
  });
  await adminApi('admin', '/admin/agents/demo-agent/resume', { method: 'POST', body: { reason: 'browser tests end' } });
});

/** Opens a page of the console from its navigation. */
async function open(tab: Tab, title: string): Promise<void> {
  await tab.page.locator('#nav a', { hasText: title }).click();
  await tab.page.getByRole('heading', { name: title, level: 1 }).waitFor();
}

describe('the console: the kill switch', () => {
  it('engages only with a reason and the word typed, shows the state once the broker has answered, and the next /token is refused; releasing lets tokens through', async () => {
    const tab = await people.signedIn('admin');
    const { page } = tab;
    await open(tab, 'Kill switch');
    const state = page.getByTestId('kill-switch-state');
    await state.filter({ hasText: 'Released' }).waitFor();
    const engage = page.getByRole('button', { name: 'Engage the kill switch' });
    expect(await engage.isDisabled()).toBe(true);
    await page.getByLabel(/^Reason/).fill('INC-4821: leaked agent credentials');
    await page.getByLabel('Type ENGAGE to confirm').fill('engage');
    expect(await engage.isDisabled()).toBe(true);
    await page.getByLabel('Type ENGAGE to confirm').fill('ENGAGE');
    expect(await engage.isEnabled()).toBe(true);

    // Hold the broker's answer back, as an engage that waits for every isolate's lease would: until it
    // arrives the page says it waits, and does not claim the switch is engaged.
    let answer: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      answer = resolve;
    });
    await page.route('**/admin/kill-switch', async (route) => {
      if (route.request().method() !== 'PUT') return route.continue();
      const response = await route.fetch();
      await held;
      await route.fulfill({ response });
    });
    await engage.click();
    await page.getByTestId('kill-switch-waiting').filter({ hasText: 'Waiting for the broker' }).waitFor();
    await page.waitForTimeout(1_500);
    expect(await page.getByTestId('kill-switch-waiting').textContent()).toMatch(/every shard… [12] s/);
    expect(await state.textContent()).toContain('Released');
    answer();

    await state.filter({ hasText: 'Engaged: no token is issued' }).waitFor();
    await page.getByRole('status').filter({ hasText: 'No token is issued from now on' }).waitFor();
    const facts = await page.locator('dl.fields').textContent();
    expect(facts).toContain('demo-admin');
    expect(facts).toContain('INC-4821: leaked agent credentials');
    expect(facts).toMatch(/Shards reached(\d+) of \1/);
    await screenshot(page, 'kill-switch');
    const refused = await agentAsksForTickets('console-kill-switch');
    expect([refused.status, refused.body.error]).toEqual([403, 'access_denied']);

    await page.unroute('**/admin/kill-switch');
    await page.getByLabel(/^Reason/).fill('INC-4821 contained');
    await page.getByLabel('Type RELEASE to confirm').fill('RELEASE');
    await page.getByRole('button', { name: 'Release the kill switch' }).click();
    await state.filter({ hasText: 'Released: tokens are issued' }).waitFor();
    const issued = await agentAsksForTickets('console-kill-switch');
    expect(issued.status, JSON.stringify(issued.body)).toBe(200);
  });
});

describe('the console: agents', () => {
  it('lists the inventory with its live state, and suspends and resumes the demo agent with a reason', async () => {
    const tab = await people.signedIn('admin');
    const { page } = tab;
    await open(tab, 'Agents');
    const row = page.locator('tr[data-agent="demo-agent"]');
    await row.waitFor();
    expect(
      await page.locator('tr[data-agent]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-agent'))),
    ).toEqual(['attack-path-scanner', 'demo-agent', 'graph-indexer', 'release-bot']);
    const cells = async (agent: string) =>
      page.locator(`tr[data-agent="${agent}"] td`).evaluateAll((tds) => tds.map((td) => td.textContent ?? ''));
    const demo = await cells('demo-agent');
    expect(demo.slice(1, 5)).toEqual([
      'alice@example.com',
      'self-signed, keys demo-agent-1',
      'supportsecurity',
      'optional',
    ]);
    expect(await row.locator('td:nth-child(4) li').allTextContents()).toEqual(['support', 'security']);
    expect(demo[5]).toMatch(/^Active/);
    expect((await cells('attack-path-scanner'))[4]).toBe('required');
    expect((await cells('release-bot'))[2]).toBe(
      'issuer github-actions, subject repo:acme/deployer:ref:refs/heads/main',
    );

    await row.getByRole('button', { name: 'Suspend', exact: true }).click();
    const confirm = page.getByRole('button', { name: 'Suspend demo-agent' });
    await confirm.click();
    await page.getByRole('alert').filter({ hasText: 'A reason is required.' }).waitFor();
    await page.getByLabel(/^Suspend: refuse all its token requests/).fill('INC-4821: demo-agent is looping');
    await confirm.click();
    await page.getByRole('status').filter({ hasText: 'demo-agent is suspended' }).waitFor();
    const suspended = (await cells('demo-agent'))[5];
    expect(suspended).toMatch(/^Suspended/);
    expect(suspended).toMatch(/suspend by demo-admin, .+: INC-4821: demo-agent is looping$/);
    await screenshot(page, 'agents');
    const refused = await agentAsksForTickets('console-suspend');
    expect([refused.status, refused.body.error]).toEqual([403, 'access_denied']);

    await row.getByRole('button', { name: 'Resume' }).click();
    await page.getByLabel(/^Resume: let it request tokens again/).fill('fixed in agent v2.3');
    await page.getByRole('button', { name: 'Resume demo-agent' }).click();
    await page.getByRole('status').filter({ hasText: 'demo-agent is resumed' }).waitFor();
    expect((await cells('demo-agent'))[5]).toMatch(/^Active[\s\S]*resume by demo-admin/);
    const issued = await agentAsksForTickets('console-suspend');
    expect(issued.status, JSON.stringify(issued.body)).toBe(200);

    // A compromised agent: its tokens revoked and no new one, in one step.
    await row.getByRole('button', { name: 'Revoke and suspend' }).click();
    await page.getByLabel(/^Revoke every token it holds and suspend it/).fill('INC-4822: its key leaked');
    await page.getByRole('button', { name: 'Revoke and suspend demo-agent' }).click();
    await page
      .getByRole('status')
      .filter({ hasText: 'demo-agent had every token it held revoked and is suspended' })
      .waitFor();
    expect((await cells('demo-agent'))[5]).toMatch(
      /^Suspended[\s\S]*Tokens issued before .+ revoked[\s\S]*revoke by demo-admin/,
    );
    const contained = await agentAsksForTickets('console-contain');
    expect([contained.status, contained.body.error]).toEqual([403, 'access_denied']);
    await adminApi('admin', '/admin/agents/demo-agent/resume', { method: 'POST', body: { reason: 'contained' } });
  });
});

describe('the console: the audit log', () => {
  it("opens an agent's records from its row, filters them, pages through them, shows one in full, and checks the chain", async () => {
    for (let n = 0; n < 3; n++) expect((await agentAsksForTickets(`console-audit-${n}`)).status).toBe(200);
    const tab = await people.signedIn('auditor');
    const { page } = tab;
    await open(tab, 'Agents');
    await page.locator('tr[data-agent="demo-agent"]').getByRole('link', { name: 'Audit records' }).click();
    await page.getByRole('heading', { name: 'Audit', level: 1 }).waitFor();
    expect(await page.getByLabel('Agent').inputValue()).toBe('demo-agent');
    const rows = page.locator('table.audit tbody tr');
    await refreshUntil(rows.filter({ hasText: 'console-audit-2' }), page.getByRole('button', { name: 'Refresh' }));
    const agents = await rows.locator('td:nth-child(5)').allInnerTexts();
    expect(new Set(agents)).toEqual(new Set(['demo-agent']));

    await page.getByLabel('Decision').selectOption('granted');
    await page.getByLabel('Event').fill('token.exchange');
    await page.getByLabel('Per page').fill('2');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.waitForURL(/decision=granted/);
    await rows.nth(1).waitFor();
    expect(await rows.count()).toBe(2);
    const first = await rows.locator('td:first-child').allInnerTexts();
    for (const decision of await rows.locator('td:nth-child(4)').allInnerTexts()) expect(decision).toBe('granted');
    await page.getByRole('button', { name: 'Older →' }).click();
    await page.getByText('(page 2)').waitFor();
    const second = await rows.locator('td:first-child').allInnerTexts();
    const seq = (cell: string) => Number(cell.slice(1));
    expect(seq(second[0] ?? '')).toBeLessThan(seq(first.at(-1) ?? ''));
    await page.getByRole('button', { name: '← Newer' }).click();
    await page.getByText('(page 2)').waitFor({ state: 'detached' });
    expect(await rows.locator('td:first-child').allInnerTexts()).toEqual(first);

    await rows.first().getByRole('button').click();
    const detail = page.locator('section.detail');
    const shown = await detail.textContent();
    for (const field of ['event', 'token.exchange', 'granted_actions', 'tickets:comment', 'policy_version', 'detail']) {
      expect(shown).toContain(field);
    }

    await page.getByRole('button', { name: 'Verify the chain' }).click();
    await page
      .getByTestId('chain-state')
      .filter({ hasText: /^holds: \d+ records checked/ })
      .waitFor();
    await screenshot(page, 'audit', { fullPage: true });
  });

  it('links an approval to the records of its task', async () => {
    const task = {
      id: taskId('console-approval-audit'),
      description: 'Disable the account of j.doe, taken over in incident INC-78',
      justification: 'the SOC confirmed the takeover',
    };
    const approvalId = await openApproval(task);
    const tab = await people.signedIn('admin');
    await open(tab, 'Approvals');
    const card = tab.page.locator(`article[data-approval="${approvalId}"]`);
    await card.getByRole('link', { name: 'Audit records of this task' }).click();
    await tab.page.waitForURL(new RegExp(`task=${task.id}`));
    const row = tab.page.locator('table.audit tbody tr', { hasText: 'approval_required' });
    await refreshUntil(row, tab.page.getByRole('button', { name: 'Refresh' }));
    expect(await row.locator('td:nth-child(7)').textContent()).toBe(task.id);
  });
});

describe('the console: a role sees only what it may do', () => {
  it('offers an auditor no engage, no suspend and no approve, only what it may read', async () => {
    const approvalId = await openApproval({
      id: taskId('console-auditor'),
      description: 'Disable the account of j.doe',
      justification: 'the SOC confirmed the takeover',
    });
    const tab = await people.signedIn('auditor');
    const { page } = tab;
    expect(await page.locator('#nav a').allTextContents()).toEqual([
      'Overview',
      'Approvals',
      'Kill switch',
      'Agents',
      'Review',
      'Audit',
    ]);

    await open(tab, 'Approvals');
    await page.locator(`article[data-approval="${approvalId}"]`).waitFor();
    expect(await page.locator('main button').allTextContents()).toEqual(['Refresh']);
    expect(await page.locator('main textarea').count()).toBe(0);

    await open(tab, 'Kill switch');
    await page.getByTestId('kill-switch-state').waitFor();
    expect(await page.getByRole('button', { name: /engage/i }).count()).toBe(0);
    expect(await page.locator('main form, main button').count()).toBe(0);

    await open(tab, 'Agents');
    await page.locator('tr[data-agent="demo-agent"]').waitFor();
    expect(await page.locator('main button').count()).toBe(0);
    expect(await page.locator('table.agents th').allTextContents()).not.toContain('Act');
  });

  it('tells an approver in words that a page is not for its role', async () => {
    const tab = await people.signedIn('approver');
    await tab.page.goto(`${tab.page.url().split('#')[0]}#/kill-switch`);
    await tab.page.getByRole('alert').filter({ hasText: 'Your role (approver) does not allow this page.' }).waitFor();
    expect(await tab.page.locator('main button').count()).toBe(0);
  });
});
