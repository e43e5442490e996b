/** Cloudflare Access in front of `/admin/*`: the team, application audience and role rules of policies/admins.yaml. */
import {
  type CryptoKey,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
  SignJWT,
} from 'jose';
import { type MockInstance, vi } from 'vitest';
import { nowSeconds } from './clock';

export const ACCESS_TEAM_DOMAIN = 'https://acme.cloudflareaccess.com';
export const ACCESS_AUD = '4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2';
export const ACCESS_CERTS_URL = `${ACCESS_TEAM_DOMAIN}/cdn-cgi/access/certs`;

/** A stand-in for the Access team's signing key, made by {@link newAccessTeam}. */
export interface AccessTeam {
  kid: string;
  privateKey: CryptoKey;
  /** The public key as the team's certs publish it. */
  publicJwk: JWK;
}

/** A new team signing key under `kid`; make one per file (`beforeAll`): the broker caches the certs per isolate. */
export async function newAccessTeam(kid: string): Promise<AccessTeam> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

export interface AccessJwtOptions {
  claims?: JWTPayload;
  omit?: readonly string[];
  header?: Partial<JWTHeaderParameters>;
  key?: CryptoKey | Uint8Array;
  now?: number;
}

/** Signs an Access JWT with the team's key; by default a fresh, valid one for `email`. */
export function signAccessJwt(team: AccessTeam, email: string, options: AccessJwtOptions = {}): Promise<string> {
  const now = options.now ?? nowSeconds();
  const payload: JWTPayload = {
    iss: ACCESS_TEAM_DOMAIN,
    aud: [ACCESS_AUD],
    email,
    sub: crypto.randomUUID(),
    type: 'app',
    identity_nonce: 'nonce',
    iat: now,
    nbf: now,
    exp: now + 600,
    ...options.claims,
  };
  for (const claim of options.omit ?? []) delete payload[claim];
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'RS256', kid: team.kid, ...options.header })
    .sign(options.key ?? team.privateKey);
}

/** The header that carries an Access JWT to the worker. */
export const viaAccess = (jwt: string) => ({ 'cf-access-jwt-assertion': jwt });

/** Mocks outbound `fetch`: the team's certs URL serves the team's key; any other URL is a test bug. */
export function mockAccessCerts(team: AccessTeam): MockInstance<typeof fetch> {
  return vi.spyOn(globalThis, 'fetch').mockImplementation(async (input) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url !== ACCESS_CERTS_URL) throw new Error(`unexpected outbound fetch: ${url}`);
    return Response.json({ keys: [team.publicJwk] });
  });
}
