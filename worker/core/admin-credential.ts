/**
 * Admin credentials: `tessera_admin.<id>.<secret>`, where only the hex SHA-256 of `<secret>` is stored (in
 * `policies/admins.yaml`). The id finds the stored hash; `worker/admin/credentials.ts` compares in constant time.
 */
import { base64url } from 'jose';

const PREFIX = 'tessera_admin';
const CREDENTIAL = /^tessera_admin\.([a-z0-9][a-z0-9-]{0,63})\.([A-Za-z0-9_-]{43})$/;

/** Hex SHA-256 of a credential secret: what `policies/admins.yaml` stores. */
export async function secretHash(secret: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(secret)));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** A new credential for `id` (32 random bytes of secret) and the hash to store for it. */
export async function newAdminCredential(id: string): Promise<{ credential: string; secretSha256: string }> {
  const secret = base64url.encode(crypto.getRandomValues(new Uint8Array(32)));
  return { credential: `${PREFIX}.${id}.${secret}`, secretSha256: await secretHash(secret) };
}

/** Splits a presented credential into its id and secret, or undefined if it is not one. */
export function parseAdminCredential(presented: string): { id: string; secret: string } | undefined {
  const parts = CREDENTIAL.exec(presented);
  if (parts?.[1] === undefined || parts[2] === undefined) return undefined;
  return { id: parts[1], secret: parts[2] };
}
