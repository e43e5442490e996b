/**
 * The secret part of the broker's credentials (admin credentials, APIs' introspection credentials): 32
 * random bytes, base64url; only its hex SHA-256 is stored (in `policies/`). Presented secrets are compared
 * by that hash in constant time (`secret-match.ts`, in the worker).
 */
import { base64url } from 'jose';
import { sha256Hex } from './hex';

/** A secret as credentials carry it: 43 characters of unpadded base64url. */
export const SECRET_PATTERN = '[A-Za-z0-9_-]{43}';

/** Hex SHA-256 of a credential secret: what `policies/` stores. */
export function secretHash(secret: string): Promise<string> {
  return sha256Hex(secret);
}

/** A new secret and the hash to store for it. */
export async function newSecret(): Promise<{ secret: string; secretSha256: string }> {
  const secret = base64url.encode(crypto.getRandomValues(new Uint8Array(32)));
  return { secret, secretSha256: await secretHash(secret) };
}
