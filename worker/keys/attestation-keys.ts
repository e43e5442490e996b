/**
 * Where attestation verification keys come from, cached per isolate: a remote JWKS per trusted issuer
 * (refetched on an unknown `kid` at most once per `refetchInterval`), an inline JWKS, or an agent's
 * registered keys. A JWKS that cannot be fetched becomes a {@link KeySourceError}: the request is refused.
 */
import { createLocalJWKSet, createRemoteJWKSet, errors, type JWTVerifyGetKey } from 'jose';
import type { KeyResolver } from '../core/attestation';
import { KeySourceError } from '../core/errors';
import type { Agent, PolicyBundle, TrustedIssuer } from '../policy/bundle';

function remoteJwks(uri: string, settings: PolicyBundle['settings']['jwks']): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(new URL(uri), {
    cacheMaxAge: settings.cacheMaxAge * 1000,
    cooldownDuration: settings.refetchInterval * 1000,
    timeoutDuration: 5000,
  });
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (error) {
      if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) throw error;
      const message = error instanceof Error ? `${error.name}: ${error.message}` : 'JWKS fetch failed';
      throw new KeySourceError(`${uri}: ${message}`, { cause: error });
    }
  };
}

/** A resolver whose key sets live as long as the isolate (and the bundle version they were built from). */
export function createKeyResolver(bundle: PolicyBundle): KeyResolver {
  const byIssuer = new Map<string, JWTVerifyGetKey>();
  const byAgent = new Map<string, JWTVerifyGetKey>();
  return {
    forIssuer(issuer: TrustedIssuer) {
      let getKey = byIssuer.get(issuer.id);
      if (getKey === undefined) {
        if (issuer.jwks !== undefined) getKey = createLocalJWKSet(issuer.jwks);
        else if (issuer.jwksUri !== undefined) getKey = remoteJwks(issuer.jwksUri, bundle.settings.jwks);
        else throw new KeySourceError(`issuer ${issuer.id} has no JWKS`);
        byIssuer.set(issuer.id, getKey);
      }
      return getKey;
    },
    forAgent(agent: Agent & { attestation: { kind: 'self_signed' } }) {
      let getKey = byAgent.get(agent.id);
      if (getKey === undefined) {
        getKey = createLocalJWKSet(agent.attestation.jwks);
        byAgent.set(agent.id, getKey);
      }
      return getKey;
    },
  };
}
