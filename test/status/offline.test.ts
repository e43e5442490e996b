/**
 * Revocation reaching an offline verifier: `@tessera/verify` as an API runs it (the JWKS and the status
 * lists, one `StatusLists` cache for its life, no introspection) refuses a revoked token, a finished task's
 * token, a suspended agent's token and every token while the kill switch is engaged, within `ttl` + 1 s of
 * the admin's answer: its own copy of the list lasts one `ttl` (on the fake clock), the colo's one second (in
 * real time). Where the change is reversible it accepts the token again as late. A list it cannot get refuses
 * (`status_unavailable`), unless the API chose otherwise.
 */
import { StatusLists, type VerifyErrorCode, verifyAgentToken } from '@tessera/verify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { agentObject, evictAgentObject } from '../helpers/agent-object';
import { useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, ISSUER, TICKETS } from '../helpers/demo';
import { postJsonTo } from '../helpers/requests';
import { issue } from '../helpers/tokens';
import { brokerFetch, refusal } from '../helpers/verify';
import { adminPost, setKillSwitch } from './list';

const clock = useForwardClock();
/** `status_lists.ttl` in policies/tessera.yaml. */
const TTL = 60;

beforeEach(async () => {
  await evictAgentObject();
});

afterEach(async () => {
  if ((await agentObject().status()).suspended) await admin(`/admin/agents/${DEMO_AGENT}/resume`);
  expect((await killSwitch(false)).status).toBe(200);
});

const admin = (path: string) => adminPost(path, 'incident INC-9');
const killSwitch = (engaged: boolean) => setKillSwitch(engaged, engaged ? 'incident INC-9' : 'test cleanup');

/** An API's verifier: the broker's JWKS and status lists, one list cache for its life. */
function offlineVerifier(statusLists = new StatusLists()) {
  return async (token: string): Promise<'accepted' | VerifyErrorCode> => {
    try {
      await verifyAgentToken(token, { issuer: ISSUER, audience: TICKETS, fetch: brokerFetch, statusLists });
      return 'accepted';
    } catch (error) {
      return (await refusal(Promise.reject(error))).code;
    }
  };
}

/** Waits out the verifier's copy of a list (one `ttl`, fake time) and the colo's (one second, real time). */
async function ttlPlusOneSecond(): Promise<void> {
  clock.advance(TTL);
  await new Promise((resolve) => setTimeout(resolve, 1000));
}

describe('an offline verifier sees each death within ttl + 1 s of the answer', () => {
  it('a revoked token: refused as revoked', async () => {
    const verify = offlineVerifier();
    const held = await issue();
    expect(await verify(held.token)).toBe('accepted');
    expect((await postJsonTo('/revoke', { token: held.token })).status).toBe(200);
    // The price of checking offline: the copy the verifier holds still says VALID.
    expect(await verify(held.token)).toBe('accepted');
    await ttlPlusOneSecond();
    expect(await verify(held.token)).toBe('revoked');
  });

  it("a finished task's token: refused as revoked", async () => {
    const verify = offlineVerifier();
    const held = await issue('task-offline-finished');
    expect(await verify(held.token)).toBe('accepted');
    expect((await admin('/admin/tasks/task-offline-finished/revoke')).status).toBe(200);
    await ttlPlusOneSecond();
    expect(await verify(held.token)).toBe('revoked');
  });

  it("a suspended agent's token: refused as suspended, and accepted again after the resume", async () => {
    const verify = offlineVerifier();
    const held = await issue();
    expect(await verify(held.token)).toBe('accepted');
    expect((await admin(`/admin/agents/${DEMO_AGENT}/suspend`)).status).toBe(200);
    await ttlPlusOneSecond();
    expect(await verify(held.token)).toBe('suspended');
    expect((await admin(`/admin/agents/${DEMO_AGENT}/resume`)).status).toBe(200);
    await ttlPlusOneSecond();
    expect(await verify(held.token)).toBe('accepted');
  });

  it('every live token while the kill switch is engaged, each accepted again once it is released', async () => {
    const verify = offlineVerifier();
    const tokens = [await issue(), await issue(), await issue()];
    for (const { token } of tokens) expect(await verify(token)).toBe('accepted');
    expect((await killSwitch(true)).status).toBe(200);
    await ttlPlusOneSecond();
    for (const { token } of tokens) expect(await verify(token)).toBe('suspended');
    expect((await killSwitch(false)).status).toBe(200);
    await ttlPlusOneSecond();
    for (const { token } of tokens) expect(await verify(token)).toBe('accepted');
  });
});

describe('an API that chose a shorter maxAge', () => {
  it('sees a revocation within maxAge + 1 s, not a ttl', async () => {
    const verify = offlineVerifier(new StatusLists({ maxAge: 5 }));
    const held = await issue();
    expect(await verify(held.token)).toBe('accepted');
    expect((await postJsonTo('/revoke', { token: held.token })).status).toBe(200);
    clock.advance(5);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await verify(held.token)).toBe('revoked');
  });

  it('refuses a maxAge that is not a positive number', () => {
    for (const maxAge of [0, -1, Number.NaN]) expect(() => new StatusLists({ maxAge })).toThrow(TypeError);
  });
});

describe('a list the verifier cannot get', () => {
  /** The broker, but its status lists do not answer. */
  const listsDown: typeof fetch = (input, init) => {
    const url = new Request(input, init).url;
    if (new URL(url).pathname.startsWith('/status/')) return Promise.reject(new TypeError('connection refused'));
    return brokerFetch(input, init);
  };

  it('refuses the token as status_unavailable (503), not as revoked', async () => {
    const { token } = await issue();
    const failure = await refusal(
      verifyAgentToken(token, { issuer: ISSUER, audience: TICKETS, fetch: listsDown, statusLists: new StatusLists() }),
    );
    expect([failure.code, failure.status]).toEqual(['status_unavailable', 503]);
  });

  it("accepts it when the API chose onUnavailable: 'accept'", async () => {
    const { token, jti } = await issue();
    const statusLists = new StatusLists({ onUnavailable: 'accept' });
    await expect(
      verifyAgentToken(token, { issuer: ISSUER, audience: TICKETS, fetch: listsDown, statusLists }),
    ).resolves.toMatchObject({ jti });
  });
});
