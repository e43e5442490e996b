/**
 * Admin credentials: `tessera_admin.<id>.<secret>`, where only the hex SHA-256 of `<secret>` is stored (in
 * `policies/admins.yaml`). The id finds the stored hash; `worker/admin/credentials.ts` compares in constant time.
 */
import { newSecret, SECRET_PATTERN } from './credential-secret';

const PREFIX = 'tessera_admin';
const CREDENTIAL = new RegExp(`^tessera_admin\\.([a-z0-9][a-z0-9-]{0,63})\\.(${SECRET_PATTERN})$`);

/** A new credential for `id` (32 random bytes of secret) and the hash to store for it. */
export async function newAdminCredential(id: string): Promise<{ credential: string; secretSha256: string }> {
  const { secret, secretSha256 } = await newSecret();
  return { credential: `${PREFIX}.${id}.${secret}`, secretSha256 };
}

/** Splits a presented credential into its id and secret, or undefined if it is not one. */
export function parseAdminCredential(presented: string): { id: string; secret: string } | undefined {
  const parts = CREDENTIAL.exec(presented);
  if (parts?.[1] === undefined || parts[2] === undefined) return undefined;
  return { id: parts[1], secret: parts[2] };
}
