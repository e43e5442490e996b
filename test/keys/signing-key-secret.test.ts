import { env } from 'cloudflare:workers';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { publishedJwks, signingKey } from '../../worker/stores/signing-keys';
import { nowSeconds } from '../helpers/clock';

async function privateJwk(kid: string) {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid };
}

describe('signing with a key imported from the SIGNING_KEY secret', () => {
  it('signs with the secret key and publishes only its public part', async () => {
    const jwk = await privateJwk('imported-1');
    const withSecret = { ...env, SIGNING_KEY: JSON.stringify(jwk) };

    const { key } = await signingKey(withSecret, nowSeconds());
    expect(key.kid).toBe('imported-1');
    const jwks = await publishedJwks(withSecret);
    expect(jwks.keys).toEqual([
      { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid: 'imported-1', alg: 'ES256', use: 'sig' },
    ]);

    const token = await new SignJWT({ sub: 'a' }).setProtectedHeader({ alg: 'ES256', kid: key.kid }).sign(key.key);
    await expect(jwtVerify(token, createLocalJWKSet({ keys: jwks.keys }))).resolves.toBeDefined();
  });

  it('refuses a secret that is not a private P-256 JWK with a kid', async () => {
    const { d: _private, ...publicOnly } = await privateJwk('public-only');
    const { kid: _kid, ...noKid } = await privateJwk('x');
    for (const secret of [JSON.stringify(publicOnly), JSON.stringify(noKid), 'not json']) {
      await expect(signingKey({ ...env, SIGNING_KEY: secret }, nowSeconds())).rejects.toThrow();
    }
  });
});
