import { base64url, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { type AccessTokenInput, accessTokenClaims, signAccessToken, taskHash } from '../../worker/core/access-token';

const ISSUER = 'https://broker.example';
/** 750 ms into a second: claims in epoch seconds round it down. */
const NOW = new Date(Math.floor(Date.now() / 1000) * 1000 + 750);
const T = Math.floor(NOW.getTime() / 1000);

function input(overrides: Partial<AccessTokenInput> = {}): AccessTokenInput {
  return {
    issuer: ISSUER,
    agent: { id: 'demo-agent', owner: 'alice@example.com' },
    audience: 'https://tickets.example.com',
    actions: ['tickets:read', 'tickets:comment'],
    task: { id: 'T-1234', hash: 'aGFzaA' },
    policyVersion: '0123456789abcdef',
    ttl: 300,
    jti: 'token-1',
    now: NOW,
    ...overrides,
  };
}

describe('accessTokenClaims (RFC 9068 §2.2)', () => {
  it('builds the claims of a token for the agent, the audience, the actions and the task', () => {
    expect(accessTokenClaims(input())).toEqual({
      iss: ISSUER,
      sub: 'demo-agent',
      client_id: 'demo-agent',
      aud: 'https://tickets.example.com',
      iat: T,
      nbf: T,
      exp: T + 300,
      jti: 'token-1',
      scope: 'tickets:read tickets:comment',
      task: { id: 'T-1234', hash: 'aGFzaA' },
      owner: 'alice@example.com',
      policy: '0123456789abcdef',
    });
  });

  it('truncates now to whole seconds for iat and nbf', () => {
    const claims = accessTokenClaims(input());
    expect(claims.iat).toBe((NOW.getTime() - 750) / 1000);
    expect(claims.nbf).toBe(claims.iat);
  });

  it('sets exp to iat plus the granted TTL', () => {
    const claims = accessTokenClaims(input({ ttl: 120 }));
    expect(claims.exp - claims.iat).toBe(120);
  });

  it('names the agent both as sub and client_id', () => {
    const claims = accessTokenClaims(input({ agent: { id: 'release-bot', owner: 'bob@example.com' } }));
    expect([claims.sub, claims.client_id, claims.owner]).toEqual(['release-bot', 'release-bot', 'bob@example.com']);
  });

  it('joins a single action without separators', () => {
    expect(accessTokenClaims(input({ actions: ['graph:read'] })).scope).toBe('graph:read');
  });
});

describe('taskHash', () => {
  it('is the base64url SHA-256 of the description (FIPS 180-2 vector "abc")', async () => {
    expect(await taskHash('abc')).toBe('ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0');
  });

  it('hashes the UTF-8 bytes of the description', async () => {
    const description = 'Résumé du ticket T-1234 — urgent 🚨';
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(description));
    expect(await taskHash(description)).toBe(base64url.encode(new Uint8Array(digest)));
    expect(await taskHash(description)).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('differs for descriptions that differ by one character', async () => {
    expect(await taskHash('Close T-1')).not.toBe(await taskHash('Close T-2'));
  });
});

describe('signAccessToken', () => {
  it('signs the claims with ES256 under typ at+jwt and the key id', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const claims = accessTokenClaims(input());
    const token = await signAccessToken(claims, { kid: 'signing-key-1', key: privateKey });

    expect(decodeProtectedHeader(token)).toEqual({ alg: 'ES256', typ: 'at+jwt', kid: 'signing-key-1' });
    const { payload } = await jwtVerify(token, publicKey, {
      algorithms: ['ES256'],
      typ: 'at+jwt',
      issuer: ISSUER,
      audience: 'https://tickets.example.com',
      currentDate: NOW,
    });
    expect(payload).toEqual(claims);
  });

  it('does not verify under another key', async () => {
    const signer = await generateKeyPair('ES256');
    const other = await generateKeyPair('ES256');
    const otherPublic = await importJWK(await exportJWK(other.publicKey), 'ES256');
    const token = await signAccessToken(accessTokenClaims(input()), { kid: 'k', key: signer.privateKey });
    await expect(jwtVerify(token, otherPublic, { currentDate: NOW })).rejects.toMatchObject({
      code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
    });
  });
});
