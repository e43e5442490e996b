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

type Metadata = { issuer?: unknown; jwks_uri?: unknown; introspection_endpoint?: unknown };

const known = new Map<string, Promise<IssuerInfo>>();

function unavailable(issuer: string, reason: unknown): VerifyError {
  return new VerifyError('jwks_unavailable', `cannot discover ${issuer}: ${String(reason)}`, { cause: reason });
}

async function fetchMetadata(issuer: string, fetchImpl: typeof fetch): Promise<Metadata> {
  let metadata: unknown;
  try {
    const response = await fetchImpl(`${issuer.replace(/\/$/, '')}${METADATA_PATH}`, {
      headers: { accept: 'application/json' },
    });
    if (!response.ok) throw new Error(`metadata answered ${response.status}`);
    metadata = await response.json();
  } catch (error) {
    throw unavailable(issuer, error);
  }
  if (typeof metadata !== 'object' || metadata === null) throw unavailable(issuer, 'metadata is not a JSON object');
  return metadata;
}

async function discover(issuer: string, fetchImpl: typeof fetch): Promise<IssuerInfo> {
  const metadata = await fetchMetadata(issuer, fetchImpl);
  // RFC 8414 §3.3: the metadata must name the issuer it was fetched for. A broker that answers under another
  // name is one the `issuer` option (or the broker's own ISSUER) names wrongly: every request would fail the
  // same way, so it is a configuration error to fix, not an outage to wait out.
  if (metadata.issuer !== issuer) {
    throw new TypeError(
      `issuer ${issuer} does not match the broker's metadata, which names issuer ${String(metadata.issuer)}`,
    );
  }
  if (typeof metadata.jwks_uri !== 'string' || !URL.canParse(metadata.jwks_uri)) {
    throw unavailable(issuer, 'metadata has no valid jwks_uri');
  }
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
 * The broker's keys and endpoints, discovered once per issuer. A failed discovery is not cached, so a
 * broker that comes back (or whose configuration is fixed) is found on the next call.
 *
 * @throws {VerifyError} `jwks_unavailable` when the metadata cannot be fetched or has no valid `jwks_uri`.
 * @throws {TypeError} when the metadata names another issuer than `issuer`.
 */
export async function issuerInfo(issuer: string, fetchImpl: typeof fetch = fetch): Promise<IssuerInfo> {
  let info = known.get(issuer);
  if (info === undefined) {
    info = discover(issuer, fetchImpl);
    known.set(issuer, info);
    info.catch(() => known.delete(issuer));
  }
  return info;
}
