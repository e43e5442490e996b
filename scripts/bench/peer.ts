/**
 * The benchmark's peers, run as a child process (its own event loop, like a real deployment): panva's
 * `oidc-provider` issuing RFC 9068 JWT access tokens (ES256, `typ: at+jwt`) by `client_credentials`, the
 * client authenticated by `private_key_jwt` (RFC 7523, each assertion's `jti` single use) and the API named
 * by a resource indicator (RFC 8707). This is what a team would run instead of a broker.
 *
 * With `PEER_DATABASE_URL`, the durable peer: its state (the replay marks of client assertions) in Postgres,
 * through the adapter of `peer-postgres.ts`, as oidc-provider is run in production. Without, the in-memory
 * peer: oidc-provider's own development adapter.
 *
 * Environment: `PEER_PORT`, `PEER_CLIENT_ID`, `PEER_CLIENT_JWK` (the client's public key, JSON),
 * `PEER_RESOURCE` (the one API), `PEER_SCOPE` (the actions it knows) and optionally `PEER_DATABASE_URL`.
 * Prints `ready <issuer>` once it listens.
 */
import { createServer } from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import { errors, Provider } from 'oidc-provider';
import pg from 'pg';
import { postgresAdapter, SCHEMA } from './peer-postgres';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
}

const port = Number(required('PEER_PORT'));
const resource = required('PEER_RESOURCE');
const scope = required('PEER_SCOPE');
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: 'peer-1', alg: 'ES256', use: 'sig' };
const databaseUrl = process.env.PEER_DATABASE_URL;
// One connection per request in flight at most: the benchmark keeps 10 in flight (pg's default pool size).
const pool = databaseUrl === undefined ? undefined : new pg.Pool({ connectionString: databaseUrl, max: 10 });
if (pool !== undefined) await pool.query(SCHEMA);

const provider = new Provider(issuer, {
  ...(pool !== undefined && { adapter: postgresAdapter(pool) }),
  clients: [
    {
      client_id: required('PEER_CLIENT_ID'),
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      id_token_signed_response_alg: 'ES256',
      jwks: { keys: [JSON.parse(required('PEER_CLIENT_JWK'))] },
      scope,
    },
  ],
  jwks: { keys: [signingKey] },
  scopes: scope.split(' '),
  clientAuthMethods: ['private_key_jwt'],
  ttl: { ClientCredentials: 300 },
  enabledJWA: { clientAuthSigningAlgValues: ['ES256'], idTokenSigningAlgValues: ['ES256'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      getResourceServerInfo: (_ctx: unknown, indicator: string) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          scope,
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

const server = createServer(provider.callback());
server.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
process.on('SIGTERM', () =>
  server.close(async () => {
    await pool?.end();
    process.exit(0);
  }),
);
