/**
 * `@tessera/verify` reading the broker's own status lists, offline (JWKS and lists, no introspection): a
 * live token passes, a revoked one is `revoked`, a suspended agent's is `suspended`.
 */

import { exports } from 'cloudflare:workers';
import { StatusLists, verifyAgentToken } from '@tessera/verify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { agentObject, evictAgentObject } from '../helpers/agent-object';
import { useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, ISSUER, TICKETS } from '../helpers/demo';
import { issue } from '../helpers/tokens';
import { brokerFetch, refusal } from '../helpers/verify';
import { adminPost, entryOf, forgetCached } from './list';

useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

afterEach(async () => {
  if ((await agentObject().status()).suspended) await admin(`/admin/agents/${DEMO_AGENT}/resume`);
});

const admin = (path: string) => adminPost(path, 'incident INC-7');

/** Verifies `token` as an API would, with a fresh list cache (the colo's cached copy forgotten first). */
async function verify(token: string) {
  await forgetCached(entryOf(token).list);
  return verifyAgentToken(token, {
    issuer: ISSUER,
    audience: TICKETS,
    fetch: brokerFetch,
    statusLists: new StatusLists(),
  });
}

describe('@tessera/verify against the broker status lists', () => {
  it('accepts a live token and refuses a revoked one as revoked', async () => {
    const live = await issue();
    const revoked = await issue();
    const response = await exports.default.fetch(`${ISSUER}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: revoked.token }),
    });
    expect(response.status).toBe(200);
    await expect(verify(live.token)).resolves.toMatchObject({ jti: live.jti });
    expect((await refusal(verify(revoked.token))).code).toBe('revoked');
  });

  it("refuses a suspended agent's token as suspended", async () => {
    const held = await issue();
    expect((await admin(`/admin/agents/${DEMO_AGENT}/suspend`)).status).toBe(200);
    expect((await refusal(verify(held.token))).code).toBe('suspended');
  });
});
