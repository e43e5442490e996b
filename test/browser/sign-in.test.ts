/** Signing in to the console: with a credential kept for the tab only, or through Cloudflare Access. */
import { describe, expect, it } from 'vitest';
import { adminApi, CREDENTIALS, screenshot, signIn, useBrowser } from './console';

const people = useBrowser();

describe('the console: signing in with a credential', () => {
  it('refuses a wrong credential with a clear error, then signs in with the right one and shows who and which role', async () => {
    const tab = await people.openTab();
    const { page } = tab;
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await page.getByLabel('Admin credential').fill(`${CREDENTIALS.approver.slice(0, -4)}AAAA`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('sign-in-error').filter({ hasText: 'did not accept this credential' }).waitFor();
    await screenshot(page, 'sign-in');

    await signIn(tab, CREDENTIALS.approver, 'demo-approver');
    expect(await page.getByTestId('identity').textContent()).toBe('demo-approver · approver');
    expect(await page.locator('#identity').textContent()).toContain('groups security');
    expect(await page.locator('#nav a').allTextContents()).toEqual(['Approvals']);
  });

  it('keeps the credential in this tab only, never in a URL, a cookie or the audit log, and forgets it on sign-out', async () => {
    const tab = await people.openTab();
    const { page, context } = tab;
    await signIn(tab, CREDENTIALS.admin, 'demo-admin');
    await page.locator('#nav a', { hasText: 'Agents' }).click();
    await page.locator('tr[data-agent="demo-agent"]').waitFor();
    const secret = CREDENTIALS.admin.split('.').at(-1) as string;

    const storage = await page.evaluate(() => ({
      session: Object.keys(sessionStorage),
      local: localStorage.length,
      cookie: document.cookie,
    }));
    expect(storage).toEqual({ session: ['tessera.console.credential'], local: 0, cookie: '' });
    expect(await context.cookies()).toEqual([]);
    expect(tab.urls.filter((url) => url.includes(secret))).toEqual([]);

    // Every call the console made is audited as demo-admin (records reach the log a moment after the
    // call), and no record holds the secret.
    const audited = async () => {
      const { body } = await adminApi('auditor', '/admin/audit?limit=500');
      return body.records as Record<string, unknown>[];
    };
    const byConsole = (records: Record<string, unknown>[]) =>
      records.filter((r) => r.actor === 'demo-admin').map((r) => r.event);
    await expect
      .poll(async () => byConsole(await audited()), { timeout: 10_000 })
      .toEqual(expect.arrayContaining(['admin.whoami', 'admin.agent.list']));
    expect(JSON.stringify(await audited())).not.toContain(secret);

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await page.reload();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  });
});

describe('the console: signing in through Cloudflare Access', () => {
  it('signs in with the Access session alone: nothing to type, the identity, role and groups shown', async () => {
    const tab = await people.throughAccess('alice@example.com');
    await tab.page.getByTestId('identity').filter({ hasText: 'alice@example.com' }).waitFor();
    expect(await tab.page.locator('#identity').textContent()).toContain('via Cloudflare Access');
    expect(await tab.page.getByTestId('identity').textContent()).toBe('alice@example.com · approver');
    expect(await tab.page.evaluate(() => sessionStorage.length)).toBe(0);
  });

  it('tells an Access identity the broker gives no role that it has none, in words', async () => {
    const tab = await people.throughAccess('mallory@elsewhere.example');
    await tab.page.getByRole('alert').filter({ hasText: 'gives your identity no role' }).waitFor();
    expect(await tab.page.locator('#nav a').count()).toBe(0);
  });
});
