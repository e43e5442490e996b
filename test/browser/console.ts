/**
 * What the browser tests share: Chromium for each file, a person's tab signed in with a credential or
 * through Cloudflare Access, what they see go wrong (dialogs, CSP violations, page errors), screenshots,
 * and the demo agent asking the broker for tokens.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type AttestationSource, selfSigned } from '@tessera/agent';
import { decodeJwt, importJWK, SignJWT } from 'jose';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect, inject } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { PROJECT_ROOT } from '../../scripts/lib/local-broker';
import { JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT as TOKEN_EXCHANGE } from '../../worker/core/token-request';
import { launchChromium } from './chromium';

export const BROKER = inject('brokerUrl');
export const CONSOLE = `${BROKER}/console/`;
export const CREDENTIALS = creds;
export const IAM = 'https://iam.example.com';
export const TICKETS = 'https://tickets.example.com';

/** Where the screenshots go: `CONSOLE_SCREENSHOTS` (the README's, `npm run console:screenshots`), or CI's results. */
const SCREENSHOTS = process.env.CONSOLE_SCREENSHOTS ?? join(PROJECT_ROOT, '.ci-results', 'console');

/** A person's browser tab on the console, and what went wrong in it. */
export interface Tab {
  context: BrowserContext;
  page: Page;
  /** Messages of dialogs opened (`alert(1)`), CSP violations and uncaught errors: a passing test has none. */
  trouble: string[];
  /** Every URL the tab requested. */
  urls: string[];
}

/** Opens a fresh context (its own sessionStorage, no cookies) on `at`, with `headers` on every request. */
async function openTab(browser: Browser, headers: Record<string, string> = {}, at = CONSOLE): Promise<Tab> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, extraHTTPHeaders: headers });
  const page = await context.newPage();
  const tab: Tab = { context, page, trouble: [], urls: [] };
  page.on('dialog', (dialog) => {
    tab.trouble.push(`dialog: ${dialog.message()}`);
    void dialog.dismiss();
  });
  page.on('pageerror', (error) => tab.trouble.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content.Security.Policy|Trusted Type/i.test(message.text()))
      tab.trouble.push(`console: ${message.text()}`);
  });
  page.on('request', (request) => tab.urls.push(request.url()));
  await page.goto(at);
  return tab;
}

/** Signs in on the sign-in form with `credential` and waits for the console to show the identity. */
export async function signIn(tab: Tab, credential: string, id: string): Promise<void> {
  await tab.page.getByLabel('Admin credential').fill(credential);
  await tab.page.getByRole('button', { name: 'Sign in' }).click();
  await tab.page.getByTestId('identity').filter({ hasText: id }).waitFor();
}

/** A Cloudflare Access JWT for `email`, as Access signs it for the application of policies/admins.yaml. */
async function accessJwt(email: string): Promise<string> {
  const jwk = inject('accessKey');
  return new SignJWT({ email, type: 'app', identity_nonce: 'browser-tests' })
    .setProtectedHeader({ alg: 'RS256', kid: String(jwk.kid) })
    .setIssuer('https://acme.cloudflareaccess.com')
    .setAudience(['4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2'])
    .setSubject(crypto.randomUUID())
    .setIssuedAt()
    .setNotBefore('0s')
    .setExpirationTime('10m')
    .sign(await importJWK(jwk, 'RS256'));
}

/** People at the console, each in a tab of their own. */
export interface Browsers {
  /** A tab on the console, signed in with nothing yet (with `headers` on every request). */
  openTab(headers?: Record<string, string>): Promise<Tab>;
  /** A tab signed in with one of the demo credentials, on the console at `at` (the broker of `policies/`'s). */
  signedIn(role: keyof typeof creds, at?: string): Promise<Tab>;
  /** A tab that passed Cloudflare Access as `email`: Access adds its JWT to every request, the page's own included. */
  throughAccess(email: string): Promise<Tab>;
}

/**
 * Launches Chromium for the calling file; after each test, checks that no tab it opened saw trouble and
 * closes them.
 */
export function useBrowser(): Browsers {
  let browser: Browser;
  const tabs: Tab[] = [];
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterEach(async () => {
    const opened = tabs.splice(0);
    await Promise.all(opened.map((tab) => tab.context.close()));
    for (const tab of opened) expect(tab.trouble).toEqual([]);
  });
  afterAll(async () => {
    await browser.close();
  });
  const tracked = async (tab: Promise<Tab>) => {
    tabs.push(await tab);
    return tabs.at(-1) as Tab;
  };
  return {
    openTab: (headers) => tracked(openTab(browser, headers)),
    async signedIn(role, at) {
      const tab = await tracked(openTab(browser, {}, at));
      await signIn(tab, creds[role], `demo-${role}`);
      return tab;
    },
    async throughAccess(email) {
      return tracked(openTab(browser, { 'cf-access-jwt-assertion': await accessJwt(email) }));
    },
  };
}

/** What Chart.js holds for the chart in figure `testid`: its labels and each dataset's label and data. */
export function chartData(page: Page, testid: string) {
  return page
    .getByTestId(testid)
    .locator('canvas')
    .evaluate((canvas) => {
      const { Chart } = globalThis as unknown as { Chart: typeof import('chart.js').Chart };
      const chart = Chart.getChart(canvas as HTMLCanvasElement);
      if (chart === undefined) throw new Error('no chart drawn on this canvas');
      return {
        labels: chart.data.labels as string[],
        datasets: Object.fromEntries(chart.data.datasets.map((set) => [set.label, set.data as number[]])),
      };
    });
}

/** Saves what the window shows as `<name>.png`, or the whole page with `fullPage`. */
export async function screenshot(page: Page, name: string, { fullPage = false } = {}): Promise<void> {
  await mkdir(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage });
}

/** Clicks `refresh` until `locator` shows: audit records reach D1 a moment after their decision. */
export async function refreshUntil(locator: Locator, refresh: Locator, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await locator.first().waitFor({ timeout: 1_000 });
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await refresh.click();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// The demo agent, asking the broker for tokens

const AGENT_ATTESTATION = selfSigned({
  agent: 'demo-agent',
  key: { file: join(PROJECT_ROOT, 'scripts/demo/demo-agent.private.jwk.json') },
});

export interface AgentTask {
  description: string;
  id: string;
  justification?: string;
}

/** A fresh task id: tests share one broker, so each looks only at its own tasks. */
export const taskId = (name: string) => `${name}-${crypto.randomUUID()}`;

/** An agent at a broker: by default the demo agent at the broker of `policies/`. */
export interface Asker {
  broker: string;
  attestation: AttestationSource;
}
const DEMO_AGENT_ASKS: Asker = { broker: BROKER, attestation: AGENT_ATTESTATION };

/**
 * An agent (the demo agent unless `as` names another) exchanges a fresh attestation for `scope` on `audience`,
 * sending `userAgent` as its User-Agent.
 */
export async function agentAsks(request: {
  audience: string;
  scope: string;
  task: AgentTask;
  approvalId?: string;
  userAgent?: string;
  as?: Asker;
}): Promise<{ status: number; body: Record<string, unknown> }> {
  const { broker, attestation } = request.as ?? DEMO_AGENT_ASKS;
  const response = await fetch(`${broker}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(request.userAgent !== undefined && { 'user-agent': request.userAgent }),
    },
    body: JSON.stringify({
      grant_type: TOKEN_EXCHANGE,
      subject_token: await attestation.attest({ audience: broker }),
      subject_token_type: JWT_TOKEN_TYPE,
      audience: request.audience,
      scope: request.scope,
      task: request.task,
      ...(request.approvalId !== undefined && { approval_id: request.approvalId }),
    }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** The demo agent asks for a ticket comment: a token unless a gate refuses it. */
export function agentAsksForTickets(name: string) {
  return agentAsks({
    audience: TICKETS,
    scope: 'tickets:comment',
    task: { id: taskId(name), description: 'Summarise ticket T-1234 and post the summary as a comment' },
  });
}

/**
 * The demo agent (or the agent `as` names) asks to disable a user (`iam:disable-user` needs a human's
 * approval): the approval's id.
 */
export async function openApproval(task: AgentTask, userAgent?: string, as?: Asker): Promise<string> {
  const { status, body } = await agentAsks({
    audience: IAM,
    scope: 'iam:disable-user',
    task,
    ...(userAgent !== undefined && { userAgent }),
    ...(as !== undefined && { as }),
  });
  expect([status, body.error], JSON.stringify(body)).toEqual([400, 'authorization_pending']);
  return String(body.approval_id);
}

/** The agent polls its approval, as often as the broker lets it, until it answers something else than pending. */
export async function pollApproval(task: AgentTask, approvalId: string) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const answer = await agentAsks({ audience: IAM, scope: 'iam:disable-user', task, approvalId });
    const waiting = answer.body.error === 'slow_down' || answer.body.error === 'authorization_pending';
    if (!waiting || Date.now() > deadline) return answer;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

/** The claims of a token the broker issued. */
export const claimsOf = (token: unknown) => decodeJwt(String(token));

/** Calls an admin endpoint with a demo credential (the test's own view of the broker, beside the console). */
export async function adminApi(role: keyof typeof creds, path: string, init: { method?: string; body?: unknown } = {}) {
  const response = await fetch(`${BROKER}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      authorization: `Bearer ${creds[role]}`,
      ...(init.body !== undefined && { 'content-type': 'application/json' }),
    },
    ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
