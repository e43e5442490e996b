/**
 * Discovery: authorization server metadata (RFC 8414) and the public signing keys (RFC 7517).
 */
import { DPOP_ALGORITHMS } from '@tessera/verify';
import { Hono } from 'hono';
import { refuse } from '../core/errors';
import { TOKEN_EXCHANGE_GRANT } from '../core/token-request';
import type { AppEnv } from '../http/app-env';
import { brokerIssuer } from '../http/issuer';
import { loadedPolicy } from '../policy/loaded';
import { publishedJwks } from '../stores/signing-keys';

/** Verifiers cache the JWKS for at most this long, and never past the next rotation or removal. */
const JWKS_MAX_AGE_SECONDS = 300;

export const discoveryRoutes = new Hono<AppEnv>();

discoveryRoutes.get('/.well-known/oauth-authorization-server', (c) => {
  const issuer = brokerIssuer(c.env);
  return c.json(
    {
      issuer,
      token_endpoint: `${issuer}/token`,
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      introspection_endpoint: `${issuer}/introspect`,
      // APIs authenticate with HTTP Basic, their audience as client id (RFC 6749 §2.3.1).
      introspection_endpoint_auth_methods_supported: ['client_secret_basic'],
      revocation_endpoint: `${issuer}/revoke`,
      grant_types_supported: [TOKEN_EXCHANGE_GRANT],
      response_types_supported: [],
      token_endpoint_auth_methods_supported: ['none'],
      scopes_supported: loadedPolicy().bundle.cedar.actions,
      dpop_signing_alg_values_supported: DPOP_ALGORITHMS,
      // draft-ietf-oauth-status-list §9.1: every status list the tokens name, listed at one URI.
      status_list_aggregation_endpoint: `${issuer}/status`,
    },
    200,
    { 'Cache-Control': `public, max-age=${JWKS_MAX_AGE_SECONDS}` },
  );
});

discoveryRoutes.get('/.well-known/jwks.json', async (c) => {
  let jwks: Awaited<ReturnType<typeof publishedJwks>>;
  try {
    jwks = await publishedJwks(c.env);
  } catch (error) {
    throw refuse('signing_unavailable', { message: String(error) }, { cause: error });
  }
  const untilChange = jwks.nextChange - Math.floor(Date.now() / 1000);
  const maxAge = Math.max(0, Math.min(JWKS_MAX_AGE_SECONDS, untilChange));
  return c.json({ keys: jwks.keys }, 200, {
    'Cache-Control': `public, max-age=${maxAge}`,
    'Content-Type': 'application/jwk-set+json',
  });
});
