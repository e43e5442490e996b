/**
 * Approvals in the console: a real step-up request from the demo agent, decided by a person in the browser,
 * and what the agent gets afterwards; four-eyes; and task text written as markup, shown as text.
 */
import { describe, expect, it } from 'vitest';
import {
  adminApi,
  claimsOf,
  openApproval,
  pollApproval,
  refreshUntil,
  screenshot,
  taskId,
  useBrowser,
} from './console';

const people = useBrowser();

const incident = (name: string) => ({
  id: taskId(name),
  description: 'Disable the account of j.doe, taken over in incident INC-77',
  justification: 'j.doe signed in from two continents within a minute; the SOC confirmed the takeover',
});

describe('the console: approving a step-up request', () => {
  it("shows the agent's request, takes the approver's reason, and the agent then collects exactly one token naming the approver", async () => {
    const task = incident('console-approve');
    const approvalId = await openApproval(task);
    const tab = await people.signedIn('approver');
    const { page } = tab;

    const card = page.locator(`article[data-approval="${approvalId}"]`);
    await card.waitFor();
    const facts = await card.locator('dl').textContent();
    for (const shown of [
      'demo-agent',
      'alice@example.com',
      'https://iam.example.com',
      'iam:disable-user',
      task.description,
      task.justification,
      task.id,
      '1 approval from an approver in group security; four-eyes: alice@example.com, the owner, may not approve',
    ]) {
      expect(facts).toContain(shown);
    }
    expect(await card.locator('.time-left').textContent()).toMatch(/^1[45] min \d\d s$/);
    await screenshot(page, 'approvals');

    // No reason, no decision.
    await card.getByRole('button', { name: 'Approve' }).click();
    await card.getByRole('alert').filter({ hasText: 'A reason is required to approve.' }).waitFor();
    expect((await adminApi('approver', `/admin/approvals/${approvalId}`)).body.status).toBe('pending');

    await card.getByLabel(/^Reason/).fill('Confirmed with the SOC on the INC-77 bridge');
    await card.getByRole('button', { name: 'Approve' }).click();
    await page.getByRole('status').filter({ hasText: 'can now collect exactly one token' }).waitFor();
    await card.waitFor({ state: 'detached' });

    const collected = await pollApproval(task, approvalId);
    expect(collected.status, JSON.stringify(collected.body)).toBe(200);
    expect(claimsOf(collected.body.access_token).approval).toEqual({ id: approvalId, by: 'demo-approver' });
    const again = await pollApproval(task, approvalId);
    expect([again.status, again.body.error]).toEqual([400, 'invalid_grant']);

    await page.getByRole('link', { name: 'Decided and expired' }).click();
    const decided = page.locator(`article[data-approval="${approvalId}"]`);
    await decided.waitFor();
    expect(await decided.locator('.badge').textContent()).toBe('collected');
    expect(await decided.locator('.decisions').textContent()).toMatch(
      /^Approved by demo-approver, .+: Confirmed with the SOC on the INC-77 bridge$/,
    );
    expect(await decided.getByRole('button').count()).toBe(0);
    await screenshot(page, 'approvals-decided');
  });

  it("refuses the agent's owner, signed in through Cloudflare Access, under four-eyes, and says why", async () => {
    const task = incident('console-four-eyes');
    const approvalId = await openApproval(task);
    const tab = await people.throughAccess('alice@example.com');
    const card = tab.page.locator(`article[data-approval="${approvalId}"]`);
    await card.waitFor();

    await card.getByLabel(/^Reason/).fill('It is my own agent, I know what it does');
    await card.getByRole('button', { name: 'Approve' }).click();
    await card.getByRole('alert').filter({ hasText: 'four-eyes' }).waitFor();
    expect(await card.getByRole('alert').textContent()).toBe(
      "Refused: four-eyes: the agent's owner may not approve or deny its own agent's request.",
    );
    await screenshot(tab.page, 'approvals-four-eyes');
    const approval = (await adminApi('approver', `/admin/approvals/${approvalId}`)).body;
    expect([approval.status, approval.decisions]).toEqual(['pending', []]);
    // The card stays, its form usable: another approver can still decide.
    expect(await card.getByRole('button', { name: 'Approve' }).isEnabled()).toBe(true);
  });
});

describe('the console: what an agent wrote is shown as text', () => {
  const markup = {
    img: '<img src=x onerror=alert(1)>',
    script: '<script>alert(1)</script>',
    userAgent: '<img src=x onerror=alert(2)> agent/1.0',
  };

  it('renders task descriptions, justifications and user agents made of markup as text, and runs none of it', async () => {
    const imgTask = { id: taskId('console-xss-img'), description: markup.img, justification: markup.script };
    const scriptTask = { id: taskId('console-xss-script'), description: markup.script, justification: markup.img };
    const ids = [await openApproval(imgTask, markup.userAgent), await openApproval(scriptTask, markup.userAgent)];
    const tab = await people.signedIn('approver');
    const { page } = tab;
    for (const id of ids) await page.locator(`article[data-approval="${id}"]`).waitFor();

    const shown = page.locator('.agent-text');
    expect(await shown.filter({ hasText: markup.img }).count()).toBeGreaterThanOrEqual(2);
    expect(await shown.filter({ hasText: markup.script }).count()).toBeGreaterThanOrEqual(2);
    expect(await page.locator('main img, main script, main [onerror]').count()).toBe(0);
    // Time for an image's error or a script to fire, if either had been made.
    await page.waitForTimeout(500);
    expect(tab.trouble).toEqual([]);

    // The audit record of the request, in full: the task and the User-Agent as text too.
    const auditor = await people.signedIn('auditor');
    await auditor.page.goto(`${auditor.page.url().split('#')[0]}#/audit?task=${imgTask.id}`);
    const row = auditor.page.locator('tbody tr', { hasText: 'token.exchange' });
    await refreshUntil(row, auditor.page.getByRole('button', { name: 'Refresh' }));
    await row.first().getByRole('button').click();
    const detail = auditor.page.locator('section.detail');
    await detail.waitFor();
    const text = await detail.textContent();
    for (const written of [markup.img, markup.script, markup.userAgent]) expect(text).toContain(written);
    expect(await auditor.page.locator('main img, main script, main [onerror]').count()).toBe(0);

    // And should anything ever assign markup to innerHTML, the CSP's Trusted Types make it throw.
    const refused = await page.evaluate(() => {
      try {
        document.body.innerHTML = '<img src=x onerror=alert(3)>';
        return 'assigned';
      } catch (error) {
        return error instanceof TypeError ? 'TypeError' : String(error);
      }
    });
    expect(refused).toBe('TypeError');
    await page.waitForTimeout(300);
    tab.trouble.splice(0, tab.trouble.length, ...tab.trouble.filter((t) => !/Trusted Type/i.test(t)));
  });
});
