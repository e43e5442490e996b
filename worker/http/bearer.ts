import { DPOP_ALGORITHMS, isCanonicalJwt } from '@tessera/verify';
import type { Context } from 'hono';
import { type AccessTokenCheck, verifyAccessToken } from '../core/access-token';
import { KeySourceError, refuse } from '../core/errors';
import { accessTokenKeys } from '../stores/signing-keys';
import { brokerIssuer } from './issuer';

/** The realm of the endpoints that take one of the broker's own tokens as the caller's credential. */
export const TOKEN_REALM = 'tessera';

/** The `WWW-Authenticate` challenge of a protected endpoint (RFC 6750 §3). */
export function challenge(realm: string, error?: string): Record<string, string> {
  return {
    'WWW-Authenticate': error === undefined ? `Bearer realm="${realm}"` : `Bearer realm="${realm}", error="${error}"`,
  };
}

/** The `WWW-Authenticate` challenge for a DPoP-bound token's refusal (RFC 9449 §7.1). */
export function dpopChallenge(realm: string, error: 'invalid_token' | 'invalid_dpop_proof'): Record<string, string> {
  return { 'WWW-Authenticate': `DPoP realm="${realm}", error="${error}", algs="${DPOP_ALGORITHMS.join(' ')}"` };
}

/** A credential as the caller presents it: `Authorization: Bearer <credential>` or `DPoP <token>`. */
export interface PresentedCredential {
  scheme: 'Bearer' | 'DPoP';
  credential: string;
}

/** The credential of `Authorization: Bearer ...` (RFC 6750 §2.1) or `DPoP ...` (RFC 9449 §7.1), if any. */
export function presentedCredential(c: Context): PresentedCredential | undefined {
  const match = /^(Bearer|DPoP) +([\x21-\x7e]+) *$/i.exec(c.req.header('authorization') ?? '');
  if (match?.[1] === undefined || match[2] === undefined) return undefined;
  return { scheme: match[1].toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer', credential: match[2] };
}

/** The bearer credential of `Authorization: Bearer <credential>` (RFC 6750 §2.1), if any. */
export function bearerCredential(c: Context): string | undefined {
  const presented = presentedCredential(c);
  return presented?.scheme === 'Bearer' ? presented.credential : undefined;
}

/**
 * Verifies one of the broker's own access tokens (its canonical spelling, signature, `typ`, `iss`, expiry);
 * revocation is the caller's business. A token is the one string the broker issued: a copy with padding,
 * whitespace or other bits in its signature segment would verify, so it is refused first.
 *
 * @throws {BrokerError} `signing_unavailable` (503) when the broker's keys cannot be had.
 */
export async function checkOwnToken(env: Env, token: string): Promise<AccessTokenCheck> {
  if (!isCanonicalJwt(token)) return { valid: false, reason: 'not_canonical' };
  try {
    return await verifyAccessToken(token, {
      issuer: brokerIssuer(env),
      getKey: accessTokenKeys(env),
      now: new Date(),
    });
  } catch (error) {
    if (error instanceof KeySourceError)
      throw refuse('signing_unavailable', { message: error.message }, { cause: error });
    throw error;
  }
}
