import { parseAdminCredential, secretHash } from '../core/admin-credential';
import type { AdminCredential } from '../policy/bundle';

function equalInConstantTime(a: string, b: string): boolean {
  const left = new TextEncoder().encode(a);
  const right = new TextEncoder().encode(b);
  // Both are hex SHA-256 digests (64 bytes) by construction; a length mismatch leaks nothing secret.
  return left.length === right.length && crypto.subtle.timingSafeEqual(left, right);
}

/**
 * Finds the stored credential a presented bearer credential matches, or undefined. The secret is hashed and
 * compared in constant time, and an unknown id costs the same as a wrong secret.
 */
export async function matchAdminCredential(
  presented: string,
  credentials: Readonly<Record<string, AdminCredential>>,
): Promise<AdminCredential | undefined> {
  const parsed = parseAdminCredential(presented);
  if (parsed === undefined) return undefined;
  const hash = await secretHash(parsed.secret);
  const stored = Object.hasOwn(credentials, parsed.id) ? credentials[parsed.id] : undefined;
  return equalInConstantTime(hash, stored?.secretSha256 ?? '0'.repeat(64)) ? stored : undefined;
}
