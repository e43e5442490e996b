/** Attestations signed with the demo agent's key (or any key), and JWTs tampered with. */
import {
  type CryptoKey,
  decodeJwt,
  decodeProtectedHeader,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';
import demoKey from '../../scripts/demo/demo-agent.private.jwk.json';
import { nowSeconds } from './clock';
import { DEMO_AGENT, DEMO_KID, ISSUER } from './demo';

/** The demo agent's private key (committed, demo only) as a signing key. */
export async function demoSigningKey(): Promise<CryptoKey> {
  const { _comment, ...jwk } = demoKey;
  return (await importJWK(jwk as JWK, 'ES256')) as CryptoKey;
}

/** The claims of a valid self-signed attestation of the demo agent at `now` (epoch seconds), with `overrides`. */
export function demoClaims(overrides: JWTPayload = {}, now: number = nowSeconds()): JWTPayload {
  return {
    iss: DEMO_AGENT,
    sub: DEMO_AGENT,
    aud: ISSUER,
    iat: now,
    exp: now + 120,
    jti: crypto.randomUUID(),
    ...overrides,
  };
}

export interface AttestationOptions {
  claims?: JWTPayload;
  /** Claims to leave out of the defaults, e.g. `['jti']`. */
  omit?: readonly string[];
  header?: Record<string, unknown>;
  key?: CryptoKey | Uint8Array;
  alg?: string;
  /** Epoch seconds used for the default `iat` and `exp`. */
  now?: number;
}

/** Signs an attestation; by default a fresh, valid self-signed assertion of the demo agent. */
export async function attestation(options: AttestationOptions = {}): Promise<string> {
  const payload = demoClaims(options.claims, options.now);
  for (const claim of options.omit ?? []) delete payload[claim];
  const alg = options.alg ?? 'ES256';
  return new SignJWT(payload)
    .setProtectedHeader({ alg, kid: DEMO_KID, ...options.header })
    .sign(options.key ?? (await demoSigningKey()));
}

/** Replaces the character at `index` of `value` (base64url, or any string) with a different one. */
export function flipChar(value: string, index: number): string {
  const replacement = value[index] === 'A' ? 'B' : 'A';
  return `${value.slice(0, index)}${replacement}${value.slice(index + 1)}`;
}

/** The token's claims signed by a key the broker never published, under the broker's own `kid`. */
export async function forgedCopy(token: string): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256');
  const { kid } = decodeProtectedHeader(token);
  return new SignJWT(decodeJwt(token))
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', ...(kid !== undefined && { kid }) })
    .sign(privateKey);
}
