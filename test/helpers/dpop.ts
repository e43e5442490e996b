/** DPoP key pairs and proofs (RFC 9449 §4). */
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';
import { nowSeconds } from './clock';
import { ISSUER } from './demo';

/** A client's DPoP key pair, with its public JWK and that JWK's RFC 7638 SHA-256 thumbprint (`cnf.jkt`). */
export interface DpopKey {
  alg: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
  jkt: string;
}

/** Generates a DPoP key pair for `alg` (ES256 by default). */
export async function dpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, publicKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

export interface DpopProofOptions {
  /** `htm`; `POST` by default. */
  htm?: string;
  /** `htu`; the broker's token endpoint by default. */
  htu?: string;
  /** `iat` in epoch seconds; now by default. */
  iat?: number;
  /** `jti`; a fresh UUID by default. */
  jti?: string;
  nonce?: string;
  /** `ath`, the hash of the access token the proof accompanies (RFC 9449 §4.2); none by default. */
  ath?: string;
  /** Claims to leave out, e.g. `['jti']`. */
  omit?: readonly string[];
  /** Header parameters over `{ typ: 'dpop+jwt', alg, jwk }`; one set to undefined is left out. */
  header?: Record<string, unknown>;
  /** Signs with this key (and `alg`) instead of the pair's private key. */
  signWith?: CryptoKey | Uint8Array;
  alg?: string;
}

/** A DPoP proof JWT for `POST {ISSUER}/token` signed with `key`, valid unless `options` say otherwise. */
export async function dpopProof(key: DpopKey, options: DpopProofOptions = {}): Promise<string> {
  const payload: JWTPayload = {
    jti: options.jti ?? crypto.randomUUID(),
    htm: options.htm ?? 'POST',
    htu: options.htu ?? `${ISSUER}/token`,
    iat: options.iat ?? nowSeconds(),
    ...(options.nonce !== undefined && { nonce: options.nonce }),
    ...(options.ath !== undefined && { ath: options.ath }),
  };
  for (const claim of options.omit ?? []) delete payload[claim];
  const alg = options.alg ?? key.alg;
  const header: Record<string, unknown> = { typ: 'dpop+jwt', alg, jwk: key.jwk, ...options.header };
  for (const [name, value] of Object.entries(header)) if (value === undefined) delete header[name];
  return new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(options.signWith ?? key.privateKey);
}
