/**
 * DPoP proofs (RFC 9449): the checks of §4.3 that need no state. Replay tracking is the caller's: the broker
 * keeps used proof ids durably per agent, a resource server in {@link ProofReplayCache}.
 */
import { base64url, calculateJwkThumbprint, EmbeddedJWK, errors, type JWK, jwtVerify } from 'jose';
import { isCanonicalJwt } from './compact.js';
import { VerifyError } from './errors.js';

/**
 * Proof signature algorithms accepted: asymmetric only (RFC 9449 §4.3 item 5), never `none` or HS*.
 * `Ed25519` is the fully-specified name (RFC 9864) current clients use; `EdDSA` the older one.
 */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'Ed25519', 'EdDSA', 'PS256', 'RS256'] as const;

/** Default age (by `iat`) beyond which a proof is refused, in seconds. */
export const DPOP_MAX_AGE_SECONDS = 60;
/** Default tolerance for a proof's `iat` ahead of our clock, in seconds. */
export const DPOP_CLOCK_TOLERANCE_SECONDS = 5;

export interface DpopProofCheck {
  /** The request's method (`htm`). */
  method: string;
  /** The request's URL (`htu` is compared without query and fragment, RFC 9449 §4.3 item 9). */
  url: string;
  /** The access token the proof accompanies, for `ath` (RFC 9449 §4.3 item 11); absent at the token endpoint. */
  accessToken?: string;
  /** The thumbprint the access token is bound to (`cnf.jkt`); the proof's key must have it. */
  boundTo?: string;
  /** Seconds; default {@link DPOP_MAX_AGE_SECONDS}. */
  maxAge?: number;
  /** Seconds; default {@link DPOP_CLOCK_TOLERANCE_SECONDS}. */
  clockTolerance?: number;
  now?: Date;
}

export interface VerifiedDpopProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's public key: the token's `cnf.jkt`. */
  jkt: string;
  jti: string;
  /** Epoch seconds. */
  iat: number;
  /** The server-provided nonce the proof carries (RFC 9449 §8), if any. */
  nonce?: string;
}

/** `scheme://host[:port]/path` of a URL, normalised (RFC 3986 §6): what `htu` is compared on. */
function comparableUrl(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return undefined;
  }
}

/** Base64url SHA-256 of an access token: a proof's `ath` claim (RFC 9449 §4.2). */
export async function accessTokenHash(accessToken: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(accessToken));
  return base64url.encode(new Uint8Array(digest));
}

function invalidProof(error: unknown): VerifyError {
  // jose reports an `iat` too far in the past as JWTExpired, one in the future as a failed `iat` check.
  const aged =
    (error instanceof errors.JWTExpired || error instanceof errors.JWTClaimValidationFailed) &&
    error.claim === 'iat' &&
    error.reason === 'check_failed';
  if (aged) return new VerifyError('dpop_stale', `DPoP proof iat is outside the accepted window: ${error.message}`);
  if (error instanceof errors.JOSEAlgNotAllowed)
    return new VerifyError('dpop_invalid', 'DPoP proof algorithm is not allowed', { cause: error });
  const message = error instanceof Error ? error.message : String(error);
  return new VerifyError('dpop_invalid', `not a valid DPoP proof: ${message}`, { cause: error });
}

/**
 * Checks a DPoP proof JWT (RFC 9449 §4.3): its canonical compact form ({@link isCanonicalJwt}),
 * `typ: dpop+jwt`, an asymmetric `alg`, a public `jwk` that verifies the signature, `jti`, `htm`, `htu`, an
 * `iat` within the window, and (for a resource request) `ath` and the token's key binding. Does not check
 * `jti` replay or the nonce: the caller does.
 *
 * @throws {VerifyError} `dpop_invalid`, `dpop_stale`, `dpop_wrong_method`, `dpop_wrong_url`,
 *   `dpop_wrong_token` or `dpop_key_mismatch`.
 */
export async function verifyDpopProof(proof: string, check: DpopProofCheck): Promise<VerifiedDpopProof> {
  if (!isCanonicalJwt(proof))
    throw new VerifyError('dpop_invalid', 'the DPoP proof is not a JWT in canonical compact form');
  let verified: Awaited<ReturnType<typeof jwtVerify>>;
  try {
    verified = await jwtVerify(proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: [...DPOP_ALGORITHMS],
      maxTokenAge: check.maxAge ?? DPOP_MAX_AGE_SECONDS,
      clockTolerance: check.clockTolerance ?? DPOP_CLOCK_TOLERANCE_SECONDS,
      requiredClaims: ['jti', 'htm', 'htu', 'iat'],
      ...(check.now !== undefined && { currentDate: check.now }),
    });
  } catch (error) {
    throw invalidProof(error);
  }
  const { payload, protectedHeader } = verified;
  const { jti, htm, htu, iat, nonce, ath } = payload;
  if (typeof jti !== 'string' || jti.length === 0 || typeof htm !== 'string' || typeof htu !== 'string')
    throw new VerifyError('dpop_invalid', 'DPoP proof jti, htm and htu must be strings');
  if (nonce !== undefined && typeof nonce !== 'string') throw new VerifyError('dpop_invalid', 'nonce must be a string');
  // A lone surrogate (JSON's "\ud800") is no text: it cannot be stored or compared as the proof's id.
  if (![jti, htm, htu, nonce ?? ''].every((claim) => claim.isWellFormed()))
    throw new VerifyError('dpop_invalid', 'DPoP proof jti, htm, htu and nonce must be well-formed strings');
  if (htm !== check.method) throw new VerifyError('dpop_wrong_method', `DPoP proof is for ${htm}, not ${check.method}`);
  const expected = comparableUrl(check.url);
  if (expected === undefined || comparableUrl(htu) !== expected)
    throw new VerifyError('dpop_wrong_url', `DPoP proof is for ${htu}, not ${check.url}`);
  if (check.accessToken !== undefined && ath !== (await accessTokenHash(check.accessToken)))
    throw new VerifyError('dpop_wrong_token', 'DPoP proof ath is not the hash of the access token');
  const jkt = await calculateJwkThumbprint(protectedHeader.jwk as JWK, 'sha256');
  if (check.boundTo !== undefined && jkt !== check.boundTo)
    throw new VerifyError('dpop_key_mismatch', 'DPoP proof key is not the key the token is bound to');
  return { jkt, jti, iat: iat as number, ...(nonce !== undefined && { nonce }) };
}

/**
 * Remembers proof ids for their window, so a proof is accepted once (RFC 9449 §11.1). In memory, so per
 * process or isolate: a proof replayed to another instance within its window is not caught.
 */
export class ProofReplayCache {
  readonly #seen = new Map<string, number>();

  constructor(readonly maxEntries = 100_000) {}

  /**
   * Records `jkt`+`jti` until `until` (epoch seconds).
   *
   * @returns false if it was already recorded and has not expired.
   */
  remember(jkt: string, jti: string, until: number, now: number): boolean {
    const key = `${jkt}.${jti}`;
    const seenUntil = this.#seen.get(key);
    if (seenUntil !== undefined && seenUntil >= now) return false;
    this.#seen.delete(key);
    if (this.#seen.size >= this.maxEntries) this.#evict(now);
    this.#seen.set(key, until);
    return true;
  }

  /** Drops expired entries; if still full, the oldest: refusing every proof would be worse. */
  #evict(now: number) {
    for (const [key, until] of this.#seen) if (until < now) this.#seen.delete(key);
    if (this.#seen.size < this.maxEntries) return;
    const oldest = this.#seen.keys().next();
    if (!oldest.done) this.#seen.delete(oldest.value);
  }
}
