/**
 * `verifyAgentToken` against the real broker running in this isolate: its metadata, its published JWKS, the
 * tokens it issues, and its introspection endpoint after `POST /revoke`.
 *
 * Every test runs on a frozen clock that only moves forward across the file, and starts with a fresh
 * rate-limit bucket (the agent's object is evicted).
 */
import { verifyAgentToken } from '@tessera/verify';
import { decodeJwt } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import { evictAgentObject } from '../helpers/agent-object';
import { forgedCopy } from '../helpers/attestation';
import { nowSeconds, useForwardClock } from '../helpers/clock';
import { GRAPH, ISSUER, TICKETS } from '../helpers/demo';
import { exchange, postForm } from '../helpers/requests';
import { demoIntrospectionCredential, issue } from '../helpers/tokens';
import { brokerFetch, refusal } from '../helpers/verify';

const clock = useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

const options = { issuer: ISSUER, audience: TICKETS, fetch: brokerFetch };

async function revoke(token: string): Promise<void> {
  const response = await postForm({ token }, '/revoke');
  expect(response.status, await response.clone().text()).toBe(200);
}

describe('verifyAgentToken: tokens the broker issues', () => {
  it('accepts a token the broker issued and returns its claims', async () => {
    const issued = await issue('task-verify');
    const claims = await verifyAgentToken(issued.token, { ...options, actions: ['tickets:read', 'tickets:comment'] });
    expect(claims).toEqual(decodeJwt(issued.token));
    expect(claims).toMatchObject({
      iss: ISSUER,
      sub: 'demo-agent',
      aud: TICKETS,
      jti: issued.jti,
      task: { id: 'task-verify' },
      owner: 'alice@example.com',
    });
    expect(claims.cnf).toBeUndefined();
  });

  it('refuses with 403 an action the broker did not grant', async () => {
    const response = await exchange({ scope: 'tickets:read' });
    expect(response.status, await response.clone().text()).toBe(200);
    const { access_token: token } = (await response.json()) as { access_token: string };
    const error = await refusal(verifyAgentToken(token, { ...options, actions: ['tickets:comment'] }));
    expect(error).toMatchObject({ code: 'missing_action', status: 403, error: 'insufficient_scope' });
  });

  it('refuses a token the broker issued for another API', async () => {
    const { token } = await issue();
    const error = await refusal(verifyAgentToken(token, { ...options, audience: GRAPH }));
    expect(error.code).toBe('wrong_audience');
  });

  it("refuses the token's claims signed by a key the broker never published, under its kid", async () => {
    const { token } = await issue();
    expect((await refusal(verifyAgentToken(await forgedCopy(token), options))).code).toBe('bad_signature');
  });

  it('refuses a token the broker issued once it has expired', async () => {
    const issued = await issue(undefined, 60);
    await expect(verifyAgentToken(issued.token, options)).resolves.toMatchObject({ jti: issued.jti });
    clock.advance(issued.exp - nowSeconds() + 5);
    expect((await refusal(verifyAgentToken(issued.token, options))).code).toBe('expired');
  });
});

describe('verifyAgentToken: revocation seen through introspection', () => {
  it('refuses a revoked token when asked to introspect', async () => {
    const { token } = await issue();
    await revoke(token);
    const error = await refusal(
      verifyAgentToken(token, { ...options, introspection: { credential: demoIntrospectionCredential(TICKETS) } }),
    );
    expect(error).toMatchObject({ code: 'revoked', status: 401, error: 'invalid_token' });
  });

  it('accepts a revoked token on its signature alone when not asked to introspect', async () => {
    const issued = await issue();
    await revoke(issued.token);
    await expect(verifyAgentToken(issued.token, options)).resolves.toMatchObject({ jti: issued.jti });
  });

  it('sees a revocation once the cached answer expires', async () => {
    const issued = await issue();
    const verifyAt = (seconds: number) =>
      verifyAgentToken(issued.token, {
        ...options,
        introspection: { credential: demoIntrospectionCredential(TICKETS), cacheSeconds: 10 },
        now: new Date(clock.ms + seconds * 1000),
      });
    await expect(verifyAt(0)).resolves.toMatchObject({ jti: issued.jti });
    await revoke(issued.token);
    await expect(verifyAt(9)).resolves.toMatchObject({ jti: issued.jti });
    expect((await refusal(verifyAt(10))).code).toBe('revoked');
  });

  it('accepts an active token when introspecting', async () => {
    const issued = await issue();
    await expect(
      verifyAgentToken(issued.token, {
        ...options,
        introspection: { credential: demoIntrospectionCredential(TICKETS) },
      }),
    ).resolves.toMatchObject({
      jti: issued.jti,
    });
  });
});
