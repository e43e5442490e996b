/**
 * A presented credential secret against its stored hash, in constant time (Workers' `timingSafeEqual`), so
 * neither a wrong secret nor an unknown id tells an attacker anything by its timing.
 */
import { secretHash } from './credential-secret';

/** A stored hash no secret has: what an unknown id is compared with, so that it costs what a wrong secret does. */
const NO_HASH = '0'.repeat(64);

/**
 * Whether `secret` is the one whose hash is `stored` (undefined for an unknown id, which then costs the same
 * as a wrong secret), comparing the hashes in constant time.
 */
export async function secretMatches(secret: string, stored: string | undefined): Promise<boolean> {
  const left = new TextEncoder().encode(await secretHash(secret));
  const right = new TextEncoder().encode(stored ?? NO_HASH);
  // Both are hex SHA-256 digests (64 bytes) by construction; a length mismatch leaks nothing secret.
  return left.length === right.length && crypto.subtle.timingSafeEqual(left, right) && stored !== undefined;
}
