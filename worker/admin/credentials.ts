/** Admin credentials as presented: matched against the stored hashes of `policies/admins.yaml`. */
import { parseAdminCredential } from '../core/admin-credential';
import { secretMatches } from '../core/secret-match';
import type { AdminCredential } from '../policy/bundle';

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
  const stored = Object.hasOwn(credentials, parsed.id) ? credentials[parsed.id] : undefined;
  return (await secretMatches(parsed.secret, stored?.secretSha256)) ? stored : undefined;
}
