/**
 * The approvals page names each agent with requests waiting and how many, each a link to that agent's
 * requests alone, so that a flood from one agent hides no other's; the listing's further pages come with
 * "Show more" (`GET /admin/approvals` pages are tested in test/approvals/listing.test.ts, the console's "Show
 * more" on a broker of its own in fleet.test.ts); and each approval
 * shows what undoes the action it allows.
 */
import { describe, expect, it } from 'vitest';
import { openApproval, taskId, useBrowser } from './console';

const people = useBrowser();

describe('the console: approvals by agent', () => {
  it("counts each agent's waiting requests and lists one agent's alone from its link", async () => {
    const approvalId = await openApproval({
      id: taskId('console-by-agent'),
      description: 'Disable the account of j.doe, taken over in incident INC-78',
      justification: 'the SOC confirmed the takeover',
    });
    const { page } = await people.signedIn('approver');
    await page.locator(`article[data-approval="${approvalId}"]`).waitFor();
    const byAgent = page.getByTestId('by-agent');
    const link = byAgent.getByRole('link', { name: /^demo-agent \(\d+\)$/ });
    await link.waitFor();

    await link.click();
    await page.getByRole('heading', { name: 'Approvals of demo-agent' }).waitFor();
    await page.locator(`article[data-approval="${approvalId}"]`).waitFor();
    expect(page.url()).toMatch(/#\/approvals\?agent=demo-agent$/);
    expect(await byAgent.locator('strong').textContent()).toMatch(/^demo-agent \(\d+\)$/);
    // Fewer than a page wait: nothing more to show.
    expect(await page.getByRole('button', { name: 'Show more' }).count()).toBe(0);

    await byAgent.getByRole('link', { name: 'every agent' }).click();
    await page.getByRole('heading', { name: 'Approvals', exact: true }).waitFor();
  });

  it('shows what undoes the action, as the grant declares it, with its runbook a link', async () => {
    const approvalId = await openApproval({
      id: taskId('console-rollback'),
      description: 'Disable the account of j.doe, taken over in incident INC-79',
      justification: 'the SOC confirmed the takeover',
    });
    const { page } = await people.signedIn('approver');
    const card = page.locator(`article[data-approval="${approvalId}"]`);
    await card.waitFor();
    const runbook = card.locator('.rollback').getByRole('link', {
      name: 'https://runbooks.example.com/iam/enable-user',
    });
    expect(await runbook.getAttribute('href')).toBe('https://runbooks.example.com/iam/enable-user');
    expect(await card.locator('.rollback').textContent()).toBe(
      'https://runbooks.example.com/iam/enable-user (grant disable-user-after-approval)',
    );
  });
});
