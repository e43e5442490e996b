/**
 * DPoP (RFC 9449): the agent's non-extractable key, the proofs it signs, and the nonces servers hand out
 * (§8, §9), remembered per origin.
 */
import { base64url, type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';

/** A DPoP key pair: the private key cannot be exported, and lives as long as the task or process holds it. */
export interface DpopKey {
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

/**
 * A fresh ES256 DPoP key pair whose private key is not extractable.
 *
 * @example
 * const key = await createDpopKey();
 * const tessera = createTessera({ broker, attestation, dpop: { key } });
 */
export async function createDpopKey(): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: false });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  return { privateKey, publicJwk: { kty, crv, x, y } };
}

/** What one proof is for. */
export interface ProofRequest {
  method: string;
  url: string | URL;
  /** The access token the request presents: the proof then carries its hash (`ath`, §4.2). */
  accessToken?: string;
  nonce?: string | undefined;
}

/** The `htu` of a URL: without query and fragment (RFC 9449 §4.2). */
function targetUri(url: string | URL): string {
  const target = new URL(url);
  target.search = '';
  target.hash = '';
  return target.href;
}

/** The base64url SHA-256 of an access token (`ath`). */
async function tokenHash(accessToken: string): Promise<string> {
  return base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(accessToken))));
}

/** A DPoP proof JWT (RFC 9449 §4.2) for one request, with a fresh `jti` and `iat` now. */
export async function dpopProof(key: DpopKey, request: ProofRequest): Promise<string> {
  const claims: Record<string, string | number> = {
    jti: crypto.randomUUID(),
    iat: Math.floor(Date.now() / 1000),
    htm: request.method.toUpperCase(),
    htu: targetUri(request.url),
  };
  if (request.accessToken !== undefined) claims.ath = await tokenHash(request.accessToken);
  if (request.nonce !== undefined) claims.nonce = request.nonce;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.publicJwk })
    .sign(key.privateKey);
}

/** The last `DPoP-Nonce` each origin sent (RFC 9449 §8.2: the client uses the latest until told another). */
export class NonceStore {
  readonly #nonces = new Map<string, string>();

  get(url: string | URL): string | undefined {
    return this.#nonces.get(new URL(url).origin);
  }

  /** Remembers the response's nonce, if it sent one; returns it. */
  remember(url: string | URL, response: Response): string | undefined {
    const nonce = response.headers.get('dpop-nonce') ?? undefined;
    if (nonce !== undefined) this.#nonces.set(new URL(url).origin, nonce);
    return nonce;
  }
}

/** Whether an API's 401 asks for a nonce (RFC 9449 §9: `WWW-Authenticate: DPoP error="use_dpop_nonce"`). */
export function asksForNonce(response: Response): boolean {
  return (
    response.status === 401 &&
    response.headers.has('dpop-nonce') &&
    /error="use_dpop_nonce"/.test(response.headers.get('www-authenticate') ?? '')
  );
}
