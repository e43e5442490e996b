/**
 * What the demo published: the keys, admin and introspection credentials committed in `scripts/demo/`, and the demo's
 * Cloudflare Access team. A deployed policy that still uses any of them can be used by anyone who reads
 * this repository, whether or not the entry still says `demo: true`.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { parseAdminCredential } from '../../worker/core/admin-credential';
import { secretHash } from '../../worker/core/credential-secret';
import { introspectionSecret } from '../../worker/core/introspection-credential';

export interface DemoSecrets {
  /** RFC 7638 thumbprints of the committed demo keys (private ones too: their public part is the same). */
  keyThumbprints: ReadonlySet<string>;
  /** Hex SHA-256 of the secrets of the committed demo admin credentials, as `admins.yaml` stores them. */
  credentialHashes: ReadonlySet<string>;
  /** Hex SHA-256 of the secrets of the committed demo introspection credentials, as `apis.yaml` stores them. */
  introspectionHashes: ReadonlySet<string>;
}

/** The demo's Access team and application in `policies/admins.yaml`: no deployment's own. */
export const DEMO_ACCESS = {
  teamHost: 'acme.cloudflareaccess.com',
  audience: '4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2',
} as const;

/** RFC 7638 thumbprint of a JWK, or undefined when it is not a key jose can fingerprint. */
export async function thumbprintOf(jwk: JWK): Promise<string | undefined> {
  try {
    return await calculateJwkThumbprint(jwk);
  } catch {
    return undefined;
  }
}

function isJwk(value: unknown): value is JWK {
  return typeof value === 'object' && value !== null && typeof (value as { kty?: unknown }).kty === 'string';
}

/**
 * Reads every JSON file of `dir`: a JWK is a demo key; every admin or introspection credential string in one is
 * a demo credential.
 */
export async function readDemoSecrets(dir: string): Promise<DemoSecrets> {
  const keyThumbprints = new Set<string>();
  const credentialHashes = new Set<string>();
  const introspectionHashes = new Set<string>();
  const names = (await readdir(dir)).filter((name) => name.endsWith('.json'));
  for (const name of names) {
    const value: unknown = JSON.parse(await readFile(join(dir, name), 'utf8'));
    if (isJwk(value)) {
      const thumbprint = await thumbprintOf(value);
      if (thumbprint !== undefined) keyThumbprints.add(thumbprint);
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    for (const field of Object.values(value)) {
      if (typeof field !== 'string') continue;
      const credential = parseAdminCredential(field);
      if (credential !== undefined) credentialHashes.add(await secretHash(credential.secret));
      const secret = introspectionSecret(field);
      if (secret !== undefined) introspectionHashes.add(await secretHash(secret));
    }
  }
  return { keyThumbprints, credentialHashes, introspectionHashes };
}
