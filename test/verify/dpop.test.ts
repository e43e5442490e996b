/**
 * `verifyAgentToken` with DPoP (RFC 9449 §7): tokens the real broker bound to an agent's key (`cnf.jkt`),
 * presented with proofs of that key for the resource request, checked as §4.3 says and accepted once.
 *
 * Every test runs on a frozen clock that only moves forward across the file, and starts with a fresh
 * rate-limit bucket (the agent's object is evicted).
 */
import { accessTokenHash, type VerifyAgentTokenOptions, verifyAgentToken } from '@tessera/verify';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import { evictAgentObject } from '../helpers/agent-object';
import { nowSeconds, useForwardClock } from '../helpers/clock';
import { ISSUER, TICKETS } from '../helpers/demo';
import { issue } from '../helpers/tokens';
import {
  brokerFetch,
  type ClientKey,
  clientKey,
  issueBound,
  RESOURCE,
  refusal,
  resourceProof,
  signProof,
} from '../helpers/verify';

useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

const options = { issuer: ISSUER, audience: TICKETS, fetch: brokerFetch };

/** Verifies `token` as presented with the `DPoP` scheme on a `POST` to `url`, with `proof`. */
function verifyDpop(
  token: string,
  dpopProof: string | undefined,
  extra: Partial<VerifyAgentTokenOptions> = {},
  url = RESOURCE,
) {
  return verifyAgentToken(token, { ...options, dpop: { proof: dpopProof, method: 'POST', url }, ...extra });
}

describe('verifyAgentToken: a DPoP-bound token with a valid proof (RFC 9449 §7.1)', () => {
  it('accepts it and returns the binding', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const claims = await verifyDpop(token, await resourceProof(token, key));
    expect(claims.cnf).toEqual({ jkt: await calculateJwkThumbprint(key.jwk, 'sha256') });
  });

  it('compares htu without the query string and fragment (RFC 9449 §4.3 item 9)', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    await expect(
      verifyDpop(token, await resourceProof(token, key), {}, `${RESOURCE}?page=2#latest`),
    ).resolves.toMatchObject({ sub: 'demo-agent' });
    await expect(
      verifyDpop(token, await resourceProof(token, key, { htu: `${RESOURCE}?page=3` })),
    ).resolves.toMatchObject({ sub: 'demo-agent' });
  });

  it('compares htu after normalising the default port and the host case', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const htu = 'https://TICKETS.example.com:443/tickets/T-1234/comments';
    await expect(verifyDpop(token, await resourceProof(token, key, { htu }))).resolves.toMatchObject({
      sub: 'demo-agent',
    });
  });

  it('accepts a proof as old as dpopMaxAge', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const dpopProof = await resourceProof(token, key, { iat: nowSeconds() - 60 });
    await expect(verifyDpop(token, dpopProof)).resolves.toMatchObject({ sub: 'demo-agent' });
  });

  it.each(['ES384', 'Ed25519', 'EdDSA', 'PS256'])(
    'accepts a token bound to a %s key with proofs of it',
    async (alg) => {
      const key = await clientKey(alg);
      const token = await issueBound(key);
      await expect(verifyDpop(token, await resourceProof(token, key))).resolves.toMatchObject({
        cnf: { jkt: await calculateJwkThumbprint(key.jwk, 'sha256') },
      });
    },
  );

  it('accepts a bound token with requireDpop', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    await expect(verifyDpop(token, await resourceProof(token, key), { requireDpop: true })).resolves.toMatchObject({
      sub: 'demo-agent',
    });
  });
});

describe('verifyAgentToken: DPoP binding refused', () => {
  it('refuses a bound token presented without the DPoP scheme (as a bearer token)', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    expect(await refusal(verifyAgentToken(token, options))).toMatchObject({
      code: 'dpop_required',
      status: 401,
      error: 'invalid_token',
    });
  });

  it('refuses an unbound token when the API requires DPoP', async () => {
    const { token } = await issue();
    const error = await refusal(verifyAgentToken(token, { ...options, requireDpop: true }));
    expect(error).toMatchObject({ code: 'dpop_required', status: 401, error: 'invalid_token' });
  });

  it('refuses an unbound token presented with the DPoP scheme', async () => {
    const key = await clientKey();
    const { token } = await issue();
    expect(await refusal(verifyDpop(token, await resourceProof(token, key)))).toMatchObject({
      code: 'dpop_not_bound',
      status: 401,
      error: 'invalid_token',
    });
  });

  it('refuses a bound token presented with the DPoP scheme and no proof', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    expect(await refusal(verifyDpop(token, undefined))).toMatchObject({
      code: 'dpop_required',
      status: 401,
      error: 'invalid_token',
    });
  });
});

describe('verifyAgentToken: DPoP proofs refused (RFC 9449 §4.3)', () => {
  it.each([
    ['another path', `${TICKETS}/tickets/T-9999/comments`],
    ['another host', 'https://evil.example/tickets/T-1234/comments'],
    ['another scheme', 'http://tickets.example.com/tickets/T-1234/comments'],
    ['not a URL', 'tickets/T-1234/comments'],
  ])('refuses a proof whose htu is %s', async (_, htu) => {
    const key = await clientKey();
    const token = await issueBound(key);
    expect(await refusal(verifyDpop(token, await resourceProof(token, key, { htu })))).toMatchObject({
      code: 'dpop_wrong_url',
      status: 401,
      error: 'invalid_dpop_proof',
    });
  });

  it('refuses a proof for another method', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    expect(await refusal(verifyDpop(token, await resourceProof(token, key, { htm: 'GET' })))).toMatchObject({
      code: 'dpop_wrong_method',
      status: 401,
      error: 'invalid_dpop_proof',
    });
  });

  it('refuses a proof whose ath is the hash of another token', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const other = await issueBound(key);
    const dpopProof = await resourceProof(token, key, { ath: await accessTokenHash(other) });
    expect(await refusal(verifyDpop(token, dpopProof))).toMatchObject({
      code: 'dpop_wrong_token',
      status: 401,
      error: 'invalid_dpop_proof',
    });
  });

  it('refuses a proof without ath', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const dpopProof = await signProof(key, { htm: 'POST', htu: RESOURCE });
    expect((await refusal(verifyDpop(token, dpopProof))).code).toBe('dpop_wrong_token');
  });

  it('refuses a proof signed by another key than the one the token is bound to', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const thief = await clientKey();
    expect(await refusal(verifyDpop(token, await resourceProof(token, thief)))).toMatchObject({
      code: 'dpop_key_mismatch',
      status: 401,
      error: 'invalid_dpop_proof',
    });
  });

  it('refuses a proof presented a second time', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const dpopProof = await resourceProof(token, key);
    await verifyDpop(token, dpopProof);
    expect(await refusal(verifyDpop(token, dpopProof))).toMatchObject({
      code: 'dpop_replayed',
      status: 401,
      error: 'invalid_dpop_proof',
    });
  });

  it('accepts a second proof with its own jti', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    await verifyDpop(token, await resourceProof(token, key));
    await expect(verifyDpop(token, await resourceProof(token, key))).resolves.toMatchObject({ sub: 'demo-agent' });
  });

  it('refuses a proof older than dpopMaxAge as stale', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const dpopProof = await resourceProof(token, key, { iat: nowSeconds() - 20 });
    expect(await refusal(verifyDpop(token, dpopProof, { dpopMaxAge: 10 }))).toMatchObject({
      code: 'dpop_stale',
      status: 401,
      error: 'invalid_dpop_proof',
    });
  });

  it('refuses a proof older than the default 60 seconds and the tolerance as stale', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const dpopProof = await resourceProof(token, key, { iat: nowSeconds() - 66 });
    expect((await refusal(verifyDpop(token, dpopProof))).code).toBe('dpop_stale');
  });

  it('refuses a proof issued in the future beyond the clock tolerance as stale', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const dpopProof = await resourceProof(token, key, { iat: nowSeconds() + 30 });
    expect(await refusal(verifyDpop(token, dpopProof))).toMatchObject({
      code: 'dpop_stale',
      status: 401,
      error: 'invalid_dpop_proof',
    });
  });

  it.each([
    ['typ JWT', { typ: 'JWT' }],
    ['no jwk', { jwk: undefined }],
  ])('refuses a proof with %s as invalid', async (_, header) => {
    const key = await clientKey();
    const token = await issueBound(key);
    const invalid = await signProof(key, { htm: 'POST', htu: RESOURCE, ath: await accessTokenHash(token) }, header);
    expect(await refusal(verifyDpop(token, invalid))).toMatchObject({
      code: 'dpop_invalid',
      status: 401,
      error: 'invalid_dpop_proof',
    });
  });

  it('refuses a proof signed with a symmetric algorithm (RFC 9449 §4.3 item 5)', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const secret = new Uint8Array(32).fill(7);
    const { jwk } = key;
    const hmacProof = await new SignJWT({
      jti: crypto.randomUUID(),
      iat: nowSeconds(),
      htm: 'POST',
      htu: RESOURCE,
      ath: await accessTokenHash(token),
    })
      .setProtectedHeader({ typ: 'dpop+jwt', alg: 'HS256', jwk })
      .sign(secret);
    expect((await refusal(verifyDpop(token, hmacProof))).code).toBe('dpop_invalid');
  });

  it('refuses a proof whose jwk carries the private key', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const leaky: ClientKey = { alg: 'ES256', privateKey, jwk: await exportJWK(privateKey) };
    expect((await refusal(verifyDpop(token, await resourceProof(token, leaky)))).code).toBe('dpop_invalid');
  });
});
