/**
 * The demo agent and the demo credentials as the agent tests use them: a client of a test broker that
 * attests with the demo agent's committed key, the approver's decisions, and the tickets API's introspection.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createTessera, selfSigned, type Tessera, type TesseraOptions } from '@tessera/agent';
import { PROJECT_ROOT } from '../../scripts/lib/local-broker';

export const DEMO_AGENT = 'demo-agent';
export const DEMO_KEY_FILE = join(PROJECT_ROOT, 'scripts/demo/demo-agent.private.jwk.json');
export const TICKETS = 'https://tickets.example.com';

const adminCredentials = JSON.parse(
  await readFile(join(PROJECT_ROOT, 'scripts/demo/admin-credentials.json'), 'utf8'),
) as Record<'admin' | 'approver', string>;
const introspectionCredentials = JSON.parse(
  await readFile(join(PROJECT_ROOT, 'scripts/demo/introspection-credentials.json'), 'utf8'),
) as Record<string, string>;

/** A client of `broker` that attests as the demo agent, with `options` over the defaults. */
export function demoTessera(broker: string, options: Partial<TesseraOptions> = {}): Tessera {
  return createTessera({
    broker,
    attestation: selfSigned({ agent: DEMO_AGENT, key: { file: DEMO_KEY_FILE } }),
    ...options,
  });
}

/** Decides a step-up approval as the demo approver (group `security`). */
export async function decide(broker: string, approvalId: string, decision: 'approve' | 'deny'): Promise<void> {
  const response = await fetch(`${broker}/admin/approvals/${approvalId}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminCredentials.approver}`, 'content-type': 'application/json' },
    body: JSON.stringify({ decision, reason: 'decided by the agent tests' }),
  });
  if (!response.ok) throw new Error(`deciding ${approvalId}: ${response.status} ${await response.text()}`);
}

/** Whether the broker says the token is active (RFC 7662, as the demo API `audience`, default the tickets API). */
export async function isActive(broker: string, accessToken: string, audience = TICKETS): Promise<boolean> {
  const basic = btoa(`${encodeURIComponent(audience)}:${encodeURIComponent(introspectionCredentials[audience] ?? '')}`);
  const response = await fetch(`${broker}/introspect`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: accessToken }),
  });
  return ((await response.json()) as { active: boolean }).active;
}

/** What `promise` rejects with, to assert on its `code`; `{ code: "resolved" }` when it does not reject. */
export async function errorOf(promise: Promise<unknown>): Promise<{ code?: string } & Record<string, unknown>> {
  return promise.then(
    () => ({ code: 'resolved' }),
    (error: unknown) => error as { code?: string },
  );
}
