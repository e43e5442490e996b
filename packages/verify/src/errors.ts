/**
 * The verifier's one error type. Every refusal carries a stable `code` to branch on and log, and the
 * RFC 6750 / RFC 9449 `error` and HTTP status a resource server answers with.
 */

/** Why a token or DPoP proof was refused. Stable: log and branch on these, never on messages. */
export type VerifyErrorCode =
  /** No credential in the request. */
  | 'missing_token'
  /** Not a JWT, or its claims are not a Tessera access token's. */
  | 'malformed'
  /** Header `typ` is not `at+jwt`. */
  | 'wrong_type'
  /** Signature algorithm not in the pinned list. */
  | 'algorithm_not_allowed'
  /** No key in the issuer's JWKS has the token's `kid`, even after a refetch. */
  | 'unknown_key'
  | 'bad_signature'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'expired'
  | 'not_yet_valid'
  /** A required action is not in the token's `scope`. */
  | 'missing_action'
  /** The broker's introspection endpoint says the token is no longer active, or its status list says INVALID. */
  | 'revoked'
  /** The token's status list says SUSPENDED (draft-ietf-oauth-status-list §7.1). */
  | 'suspended'
  /** The token's status list has another value (0x03, an application-specific one), or no entry at its `idx`. */
  | 'unknown_status'
  /** The token names a status list that cannot be fetched, or that does not verify (fail closed). */
  | 'status_unavailable'
  /** The issuer's metadata or JWKS could not be fetched (fail closed). */
  | 'jwks_unavailable'
  /** Introspection was required and did not answer (fail closed). */
  | 'introspection_unavailable'
  /** The token is DPoP-bound (`cnf.jkt`) and came without a DPoP proof, or as a Bearer token. */
  | 'dpop_required'
  /** The `DPoP` scheme was used with a token that is not DPoP-bound. */
  | 'dpop_not_bound'
  /** The proof is not a valid DPoP proof JWT (`typ`, `alg`, `jwk`, signature, claims). */
  | 'dpop_invalid'
  /** The proof's `htm` is not the request's method. */
  | 'dpop_wrong_method'
  /** The proof's `htu` is not the request's URL. */
  | 'dpop_wrong_url'
  /** The proof's `iat` is outside the accepted window. */
  | 'dpop_stale'
  /** The proof's `ath` is not the hash of the presented access token. */
  | 'dpop_wrong_token'
  /** The proof is signed by another key than the one the token is bound to. */
  | 'dpop_key_mismatch'
  /** The proof's `jti` was seen before within its window. */
  | 'dpop_replayed';

/** The `error` of the `WWW-Authenticate` challenge (RFC 6750 §3.1, RFC 9449 §7.1). */
export type ChallengeError = 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof';

type Answer = { status: 401 | 403 | 503; error?: ChallengeError };

const INVALID_TOKEN: Answer = { status: 401, error: 'invalid_token' };
const INVALID_PROOF: Answer = { status: 401, error: 'invalid_dpop_proof' };
const UNAVAILABLE: Answer = { status: 503 };

const ANSWERS: Record<VerifyErrorCode, Answer> = {
  // RFC 6750 §3.1: a request with no credential at all gets a challenge without an error code.
  missing_token: { status: 401 },
  malformed: INVALID_TOKEN,
  wrong_type: INVALID_TOKEN,
  algorithm_not_allowed: INVALID_TOKEN,
  unknown_key: INVALID_TOKEN,
  bad_signature: INVALID_TOKEN,
  wrong_issuer: INVALID_TOKEN,
  wrong_audience: INVALID_TOKEN,
  expired: INVALID_TOKEN,
  not_yet_valid: INVALID_TOKEN,
  missing_action: { status: 403, error: 'insufficient_scope' },
  revoked: INVALID_TOKEN,
  suspended: INVALID_TOKEN,
  unknown_status: INVALID_TOKEN,
  status_unavailable: UNAVAILABLE,
  jwks_unavailable: UNAVAILABLE,
  introspection_unavailable: UNAVAILABLE,
  dpop_required: INVALID_TOKEN,
  dpop_not_bound: INVALID_TOKEN,
  dpop_invalid: INVALID_PROOF,
  dpop_wrong_method: INVALID_PROOF,
  dpop_wrong_url: INVALID_PROOF,
  dpop_stale: INVALID_PROOF,
  dpop_wrong_token: INVALID_PROOF,
  dpop_key_mismatch: INVALID_PROOF,
  dpop_replayed: INVALID_PROOF,
};

/**
 * What a resource server may tell the client about each refusal (`error_description`, RFC 6750 §3): our words
 * only, in the characters RFC 6749 §5.2 allows, never the token's or the proof's content. The `message` of a
 * {@link VerifyError} says more, for the API's log.
 */
export const PUBLIC_DESCRIPTIONS: Readonly<Record<VerifyErrorCode, string>> = {
  missing_token: 'a token is required',
  malformed: 'the token is not a well-formed Tessera access token',
  wrong_type: 'the token is not an at+jwt access token',
  algorithm_not_allowed: 'the token is signed with an algorithm not allowed',
  unknown_key: 'no published key has the kid of the token',
  bad_signature: 'the token signature does not verify',
  wrong_issuer: 'the token is from another issuer',
  wrong_audience: 'the token is for another audience',
  expired: 'the token has expired',
  not_yet_valid: 'the token is not valid yet',
  missing_action: 'the token does not grant an action this request needs',
  revoked: 'the token is no longer active',
  suspended: 'the token is suspended',
  unknown_status: 'the token status is not valid',
  status_unavailable: 'cannot verify the token now',
  jwks_unavailable: 'cannot verify the token now',
  introspection_unavailable: 'cannot verify the token now',
  dpop_required: 'a DPoP-bound token and its DPoP proof are required',
  dpop_not_bound: 'the DPoP scheme needs a DPoP-bound token',
  dpop_invalid: 'the DPoP proof is not valid',
  dpop_wrong_method: 'the DPoP proof is for another method',
  dpop_wrong_url: 'the DPoP proof is for another URL',
  dpop_stale: 'the DPoP proof is too old, or from the future',
  dpop_wrong_token: 'the DPoP proof is for another token',
  dpop_key_mismatch: 'the DPoP proof is not signed by the key the token is bound to',
  dpop_replayed: 'the DPoP proof was used before',
};

/**
 * A token or proof the verifier refused, or (status 503) a source it needed that did not answer.
 *
 * @example
 * try {
 *   await verifyAgentToken(token, options);
 * } catch (error) {
 *   if (error instanceof VerifyError && error.code === 'revoked') console.warn('revoked token', error.message);
 *   throw error;
 * }
 */
export class VerifyError extends Error {
  override readonly name = 'VerifyError';
  /** 401 (bad or missing credential), 403 (an action is missing) or 503 (a source it needs is down). */
  readonly status: 401 | 403 | 503;
  /** The challenge's `error`; absent for a missing credential and for a 503. */
  readonly error: ChallengeError | undefined;
  /** What the client may be told (`error_description`): the code's public text, never the message. */
  readonly description: string;

  constructor(
    readonly code: VerifyErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    const answer = ANSWERS[code];
    this.status = answer.status;
    this.error = answer.error;
    this.description = PUBLIC_DESCRIPTIONS[code];
  }
}
