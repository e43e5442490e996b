/**
 * What the verifier learns about the broker from its metadata (RFC 8414): the JWKS and the introspection
 * endpoint. Cached per process or isolate; the JWKS is refetched on an unknown `kid`, at most once per
 * cooldown, by jose's remote key set.
 */
import { createRemoteJWKSet, customFetch, type JWTVerifyGetKey } from 'jose';
import { VerifyError } from './errors.js';

/** How long fetched keys are used before a refetch, and the least time between two refetches. */
const JWKS_CACHE_MAX_AGE_MS = 5 * 60_000;
const JWKS_COOLDOWN_MS = 30_000;
const METADATA_PATH = '/.well-known/oauth-authorization-server';

export interface IssuerInfo {
  keys: JWTVerifyGetKey;
  introspectionEndpoint: string | undefined;
}

const known = new Map<string, Promise<IssuerInfo>>();

async function discover(issuer: string, fetchImpl: typeof fetch): Promise<IssuerInfo> {
  const response = await fetchImpl(`${issuer.replace(/\/$/, '')}${METADATA_PATH}`, {
    headers: { accept: 'application/json' },
  });
  if (!response.ok) throw new Error(`metadata answered ${response.status}`);
  const metadata = (await response.json()) as {
    issuer?: unknown;
    jwks_uri?: unknown;
    introspection_endpoint?: unknown;
  };
  // RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
  if (metadata.issuer !== issuer) throw new Error(`metadata names issuer ${String(metadata.issuer)}`);
  if (typeof metadata.jwks_uri !== 'string') throw new Error('metadata has no jwks_uri');
  return {
    keys: createRemoteJWKSet(new URL(metadata.jwks_uri), {
      cacheMaxAge: JWKS_CACHE_MAX_AGE_MS,
      cooldownDuration: JWKS_COOLDOWN_MS,
      [customFetch]: fetchImpl,
    }),
    introspectionEndpoint:
      typeof metadata.introspection_endpoint === 'string' ? metadata.introspection_endpoint : undefined,
  };
}

/**
 * The broker's keys and endpoints, discovered once per issuer. A failed discovery is not cached.
 *
 * @throws {VerifyError} `jwks_unavailable` when the metadata cannot be fetched or does not match.
 */
export async function issuerInfo(issuer: string, fetchImpl: typeof fetch = fetch): Promise<IssuerInfo> {
  let info = known.get(issuer);
  if (info === undefined) {
    info = discover(issuer, fetchImpl);
    known.set(issuer, info);
    info.catch(() => known.delete(issuer));
  }
  try {
    return await info;
  } catch (error) {
    throw new VerifyError('jwks_unavailable', `cannot discover ${issuer}: ${String(error)}`, { cause: error });
  }
}
