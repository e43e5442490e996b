import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { ISSUER } from '../helpers/demo';
import { TOKEN_EXCHANGE } from '../helpers/requests';

describe('GET /.well-known/oauth-authorization-server (RFC 8414)', () => {
  it('describes the broker', async () => {
    const response = await exports.default.fetch(`${ISSUER}/.well-known/oauth-authorization-server`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      issuer: ISSUER,
      token_endpoint: `${ISSUER}/token`,
      jwks_uri: `${ISSUER}/.well-known/jwks.json`,
      introspection_endpoint: `${ISSUER}/introspect`,
      introspection_endpoint_auth_methods_supported: ['client_secret_basic'],
      revocation_endpoint: `${ISSUER}/revoke`,
      grant_types_supported: [TOKEN_EXCHANGE],
    });
  });
});

describe('GET /.well-known/jwks.json (RFC 7517)', () => {
  it('publishes the current and the next signing key, public parts only', async () => {
    const response = await exports.default.fetch(`${ISSUER}/.well-known/jwks.json`);
    expect(response.status).toBe(200);
    const { keys } = (await response.json()) as { keys: Record<string, unknown>[] };
    expect(keys).toHaveLength(2);
    for (const key of keys) {
      expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
      expect(typeof key.kid).toBe('string');
      expect(key).not.toHaveProperty('d');
    }
  });

  it('lets verifiers cache it for a bounded time', async () => {
    const response = await exports.default.fetch(`${ISSUER}/.well-known/jwks.json`);
    const maxAge = Number(/max-age=(\d+)/.exec(response.headers.get('cache-control') ?? '')?.[1]);
    expect(maxAge).toBeGreaterThan(0);
    expect(maxAge).toBeLessThanOrEqual(300);
  });
});
