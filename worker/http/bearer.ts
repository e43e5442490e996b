import { isCanonicalJwt } from '@tessera/verify';
import type { Context } from 'hono';
import { type AccessTokenCheck, verifyAccessToken } from '../core/access-token';
import { KeySourceError, refuse } from '../core/errors';
import { accessTokenKeys } from '../keys/signing';
import { brokerIssuer } from './issuer';

/** The `WWW-Authenticate` challenge of a protected endpoint (RFC 6750 §3). */
export function challenge(realm: string, error?: string): Record<string, string> {
  return {
    'WWW-Authenticate': error === undefined ? `Bearer realm="${realm}"` : `Bearer realm="${realm}", error="${error}"`,
  };
}

/** The bearer credential of `Authorization: Bearer <credential>` (RFC 6750 §2.1), if any. */
export function bearerCredential(c: Context): string | undefined {
  const match = /^Bearer +([\x21-\x7e]+) *$/i.exec(c.req.header('authorization') ?? '');
  return match?.[1];
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
