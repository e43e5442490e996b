/**
 * `verifyAgentToken`: everything a downstream API checks before it acts on a Tessera access token.
 */
import { errors, jwtVerify } from 'jose';
import { isCanonicalJwt } from './compact.js';
import { DPOP_CLOCK_TOLERANCE_SECONDS, DPOP_MAX_AGE_SECONDS, ProofReplayCache, verifyDpopProof } from './dpop.js';
import { VerifyError } from './errors.js';
import { checkActive, checkIntrospectionOptions, type IntrospectionOptions } from './introspection.js';
import { issuerInfo } from './issuer.js';
import { checkStatus, StatusLists, type StatusReference, statusReference } from './status-check.js';

/** Signature algorithms the broker signs access tokens with (RFC 9068 §2.1: never `none`). */
export const TOKEN_ALGORITHMS = ['ES256', 'EdDSA'] as const;
export type TokenAlgorithm = (typeof TOKEN_ALGORITHMS)[number];

/** The claims of a verified Tessera access token (RFC 9068 plus the task, owner and policy). */
export interface AgentTokenClaims {
  iss: string;
  /** The agent id. */
  sub: string;
  client_id: string;
  aud: string;
  iat: number;
  nbf: number;
  exp: number;
  jti: string;
  /** Space-separated granted actions. */
  scope: string;
  /** The one task the token is for; `hash` is the base64url SHA-256 of its description. */
  task: { id: string; hash: string };
  /** The agent's accountable human owner. */
  owner: string;
  /** Version of the policy bundle that decided. */
  policy: string;
  /** Set when an action needed step-up approval: the approval and who approved. */
  approval?: { id: string; by: string | string[] };
  /** Set when the token is DPoP-bound: the thumbprint of the key proofs must be signed with. */
  cnf?: { jkt: string };
  /** Set when the token has an entry in a status list (draft-ietf-oauth-status-list §6.1). */
  status?: StatusReference;
}

/** The DPoP side of a request that presented its token with the `DPoP` scheme (RFC 9449 §7.1). */
export interface DpopRequest {
  /** The `DPoP` header; undefined when the request carried none. */
  proof: string | undefined;
  method: string;
  /** The URL the client called (the proof's `htu`). */
  url: string;
}

export interface VerifyAgentTokenOptions {
  /** The broker's issuer URL; its metadata and JWKS are discovered from it and cached. */
  issuer: string;
  /** This API's audience, exactly as agents request it. */
  audience: string;
  /** Actions the request needs; each must be in the token's `scope`. */
  actions?: readonly string[];
  /** Seconds of tolerance on `exp`, `nbf` and a DPoP proof's `iat`; default 5. */
  clockTolerance?: number;
  /** Accepted signature algorithms; default ES256 and EdDSA. */
  algorithms?: readonly TokenAlgorithm[];
  /**
   * Also ask the broker whether the token was revoked (RFC 7662), with this API's introspection credential;
   * answers cached a few seconds.
   */
  introspection?: IntrospectionOptions;
  /** Present when the token came with the `DPoP` scheme: the proof and what it must match. */
  dpop?: DpopRequest;
  /** Refuse tokens that are not DPoP-bound. */
  requireDpop?: boolean;
  /** Seconds a DPoP proof is accepted after its `iat`; default 60. */
  dpopMaxAge?: number;
  /**
   * The status lists of tokens that name one (`status.status_list`), cached by this instance: create one
   * per API and pass it to every call. Without it, each call fetches the list its token names.
   */
  statusLists?: StatusLists;
  /** For a service binding or a test; default the global `fetch`. */
  fetch?: typeof fetch;
  /** The verifier's clock; default now. */
  now?: Date;
}

const replayedProofs = new ProofReplayCache();

function tokenError(error: unknown, options: VerifyAgentTokenOptions): VerifyError {
  if (error instanceof VerifyError) return error;
  if (error instanceof errors.JWTExpired) return new VerifyError('expired', 'the token has expired');
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'iss':
        return new VerifyError('wrong_issuer', `the token is not from ${options.issuer}`);
      case 'aud':
        return new VerifyError('wrong_audience', `the token is not for ${options.audience}`);
      case 'nbf':
        return new VerifyError('not_yet_valid', 'the token is not valid yet');
      case 'typ':
        return new VerifyError('wrong_type', 'the token is not an at+jwt access token');
      default:
        return new VerifyError('malformed', `the token's ${error.claim} claim is invalid`);
    }
  }
  if (error instanceof errors.JOSEAlgNotAllowed)
    return new VerifyError('algorithm_not_allowed', 'the token is signed with an algorithm not allowed');
  if (error instanceof errors.JWKSNoMatchingKey)
    return new VerifyError('unknown_key', "no published key has the token's kid");
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JWKSMultipleMatchingKeys)
    return new VerifyError('bad_signature', 'the token signature does not verify');
  // A key set that cannot be fetched or read is a fault, not a verdict on the token: fail closed with 503.
  if (
    !(error instanceof errors.JOSEError) ||
    // jose's generic error: the JWKS endpoint answered something other than 200.
    error.code === 'ERR_JOSE_GENERIC' ||
    error instanceof errors.JWKSInvalid ||
    error instanceof errors.JWKSTimeout
  ) {
    return new VerifyError('jwks_unavailable', `cannot fetch the issuer's keys: ${String(error)}`, { cause: error });
  }
  // Any other JOSE refusal (bad encoding, an unsupported crit header, ...) is about the token itself.
  return new VerifyError('malformed', `the token is not a well-formed JWT: ${error.code}`, { cause: error });
}

function isTaskClaim(value: unknown): value is AgentTokenClaims['task'] {
  const task = value as { id?: unknown; hash?: unknown } | null;
  return typeof task === 'object' && task !== null && typeof task.id === 'string' && typeof task.hash === 'string';
}

function asClaims(payload: Record<string, unknown>): AgentTokenClaims {
  const strings = ['sub', 'client_id', 'jti', 'scope', 'owner', 'policy'] as const;
  const missing = strings.find((name) => typeof payload[name] !== 'string');
  if (missing !== undefined) throw new VerifyError('malformed', `the token has no ${missing} claim`);
  if (!isTaskClaim(payload.task)) throw new VerifyError('malformed', 'the token has no task claim');
  const cnf = payload.cnf as { jkt?: unknown } | undefined;
  if (cnf !== undefined && typeof cnf?.jkt !== 'string') throw new VerifyError('malformed', 'the cnf claim has no jkt');
  const { status, ...rest } = payload;
  const reference = statusReference(status);
  return { ...rest, ...(reference !== undefined && { status: reference }) } as unknown as AgentTokenClaims;
}

async function checkDpop(token: string, claims: AgentTokenClaims, options: VerifyAgentTokenOptions, now: Date) {
  const jkt = claims.cnf?.jkt;
  if (options.dpop === undefined) {
    // RFC 9449 §7.1: a DPoP-bound token presented as a bearer token is refused.
    if (jkt !== undefined) throw new VerifyError('dpop_required', 'the token is DPoP-bound; present it with a proof');
    if (options.requireDpop) throw new VerifyError('dpop_required', 'this API accepts DPoP-bound tokens only');
    return;
  }
  if (jkt === undefined) throw new VerifyError('dpop_not_bound', 'the DPoP scheme needs a DPoP-bound token');
  if (options.dpop.proof === undefined) throw new VerifyError('dpop_required', 'the request has no DPoP proof');
  const maxAge = options.dpopMaxAge ?? DPOP_MAX_AGE_SECONDS;
  const tolerance = options.clockTolerance ?? DPOP_CLOCK_TOLERANCE_SECONDS;
  const proof = await verifyDpopProof(options.dpop.proof, {
    method: options.dpop.method,
    url: options.dpop.url,
    accessToken: token,
    boundTo: jkt,
    maxAge,
    clockTolerance: tolerance,
    now,
  });
  const seconds = Math.floor(now.getTime() / 1000);
  if (!replayedProofs.remember(proof.jkt, proof.jti, proof.iat + maxAge + tolerance, seconds))
    throw new VerifyError('dpop_replayed', 'the DPoP proof was used before');
}

/**
 * Verifies a Tessera access token for this API: its one canonical spelling ({@link isCanonicalJwt}), the
 * signature against the broker's published JWKS (discovered from `issuer`, cached, refetched on an unknown
 * `kid`), `typ: at+jwt`, a pinned algorithm, `iss`, `aud`, `exp`/`nbf` with a small tolerance, every
 * required action in `scope`; for a DPoP-bound token the proof (RFC 9449 §7); for a token that names a
 * status list, its entry there (draft-ietf-oauth-status-list §8.3: VALID only); optionally the broker's
 * word that it is not revoked.
 *
 * @example
 * const claims = await verifyAgentToken(token, {
 *   issuer: 'https://tessera.example.com',
 *   audience: 'https://tickets.example.com',
 *   actions: ['tickets:comment'],
 * });
 * console.log(`${claims.sub} (owner ${claims.owner}) for task ${claims.task.id}`);
 *
 * @throws {VerifyError} with a stable `code`; `status` 401/403 for a refused token (`revoked`, `suspended`,
 *   `unknown_status` from its status list), 503 when the broker's keys, the token's status list
 *   (`status_unavailable`) or introspection could not be had (fail closed).
 * @throws {TypeError} when the options are unusable, when `issuer`'s metadata names another issuer (the
 *   option, or the broker's own issuer setting, is wrong), or when the broker refuses the introspection
 *   credential: a configuration error rather than an outage.
 */
export async function verifyAgentToken(token: string, options: VerifyAgentTokenOptions): Promise<AgentTokenClaims> {
  if (typeof options.issuer !== 'string' || options.issuer === '') throw new TypeError('issuer is required');
  if (typeof options.audience !== 'string' || options.audience === '') throw new TypeError('audience is required');
  checkIntrospectionOptions(options.introspection);
  if (!isCanonicalJwt(token)) throw new VerifyError('malformed', 'the token is not a JWT in canonical compact form');
  const now = options.now ?? new Date();
  const fetchImpl = options.fetch ?? fetch;
  const info = await issuerInfo(options.issuer, fetchImpl);
  const algorithms = [...(options.algorithms ?? TOKEN_ALGORITHMS)];
  const clockTolerance = options.clockTolerance ?? 5;
  let claims: AgentTokenClaims;
  try {
    const { payload } = await jwtVerify(token, info.keys, {
      issuer: options.issuer,
      audience: options.audience,
      typ: 'at+jwt',
      algorithms,
      clockTolerance,
      requiredClaims: ['exp', 'iat', 'jti'],
      currentDate: now,
    });
    claims = asClaims(payload);
  } catch (error) {
    throw tokenError(error, options);
  }
  const granted = claims.scope.split(' ');
  const missing = (options.actions ?? []).filter((action) => !granted.includes(action));
  if (missing.length > 0) throw new VerifyError('missing_action', `the token does not grant ${missing.join(' ')}`);
  await checkDpop(token, claims, options, now);
  if (claims.status !== undefined) {
    await checkStatus(claims.status, options.statusLists ?? new StatusLists(), {
      issuer: options.issuer,
      keys: info.keys,
      algorithms,
      clockTolerance,
      fetch: fetchImpl,
      now,
    });
  }
  if (options.introspection !== undefined) {
    await checkActive(
      info.introspectionEndpoint,
      { raw: token, id: `${claims.iss} ${claims.jti}`, audience: options.audience },
      options.introspection,
      Math.floor(now.getTime() / 1000),
      fetchImpl,
    );
  }
  return claims;
}
