/**
 * The one error type for untrusted input and broker faults on a request path.
 *
 * A refusal carries a tagged internal `reason` (what went to the audit log) and maps, through one table,
 * to the public OAuth `code`, HTTP status and a generic description. Public text stays generic where
 * detail would help an attacker (signatures, keys, inventory); the reason and its detail go to the audit record.
 */

/** OAuth error codes used by the broker (RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 8707, RFC 9449, OpenID CIBA). */
export type ErrorCode =
  | 'invalid_request'
  | 'invalid_grant'
  | 'invalid_target'
  | 'invalid_scope'
  | 'access_denied'
  | 'authorization_pending'
  | 'expired_token'
  | 'slow_down'
  | 'temporarily_unavailable'
  | 'server_error'
  | 'invalid_client'
  | 'invalid_token'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'insufficient_scope'
  | 'not_found'
  | 'method_not_allowed';

interface ReasonSpec {
  readonly code: ErrorCode;
  readonly status: 400 | 401 | 403 | 404 | 405 | 413 | 415 | 429 | 500 | 503;
  readonly description: string;
}

const ATTESTATION_REJECTED = 'the attestation could not be verified';

/**
 * RFC 6749 §5.2: `error_description` is `%x20-21 / %x23-5B / %x5D-7E`, printable ASCII without `"` and `\`.
 * Every description is built from words here and in the hint tables, plus input passed through
 * {@link publicEcho}.
 */
export const DESCRIPTION_CHARACTERS = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** Every reason a refusal can have: its public code, status and description. */
export const REASONS = {
  // Malformed requests (RFC 6749 §5.2 invalid_request).
  unsupported_media_type: {
    code: 'invalid_request',
    status: 415,
    description: 'content type must be application/x-www-form-urlencoded or application/json',
  },
  body_too_large: { code: 'invalid_request', status: 413, description: 'request body exceeds 16 KiB' },
  client_disconnected: { code: 'invalid_request', status: 400, description: 'the request body ended early' },
  malformed_body: { code: 'invalid_request', status: 400, description: 'request body could not be parsed' },
  invalid_field: { code: 'invalid_request', status: 400, description: 'a request parameter is missing or invalid' },
  // Verification gate: the attestation (RFC 8693 §2.2.2 invalid_grant).
  malformed_attestation: { code: 'invalid_grant', status: 400, description: 'subject_token is not a well-formed JWT' },
  alg_not_allowed: { code: 'invalid_grant', status: 400, description: 'attestation algorithm is not allowed' },
  untrusted_issuer: { code: 'invalid_grant', status: 400, description: ATTESTATION_REJECTED },
  unknown_agent: { code: 'invalid_grant', status: 400, description: ATTESTATION_REJECTED },
  ambiguous_binding: { code: 'invalid_grant', status: 400, description: ATTESTATION_REJECTED },
  unknown_kid: { code: 'invalid_grant', status: 400, description: ATTESTATION_REJECTED },
  bad_signature: { code: 'invalid_grant', status: 400, description: ATTESTATION_REJECTED },
  jwks_unavailable: { code: 'invalid_grant', status: 400, description: ATTESTATION_REJECTED },
  wrong_audience: { code: 'invalid_grant', status: 400, description: 'attestation audience must be the broker issuer' },
  expired: { code: 'invalid_grant', status: 400, description: 'attestation has expired' },
  not_yet_valid: { code: 'invalid_grant', status: 400, description: 'attestation is not yet valid' },
  issued_in_future: { code: 'invalid_grant', status: 400, description: 'attestation iat is in the future' },
  too_old: { code: 'invalid_grant', status: 400, description: 'attestation is too old' },
  missing_claim: { code: 'invalid_grant', status: 400, description: 'attestation lacks a required claim' },
  claim_mismatch: { code: 'invalid_grant', status: 400, description: ATTESTATION_REJECTED },
  replayed: { code: 'invalid_grant', status: 400, description: 'attestation has already been used' },
  // Proof of possession (RFC 9449 §5, §8).
  dpop_required: {
    code: 'invalid_request',
    status: 400,
    description: 'policy requires a DPoP-bound token: send a DPoP proof',
  },
  invalid_dpop_proof: { code: 'invalid_dpop_proof', status: 400, description: 'the DPoP proof is not valid' },
  dpop_replayed: { code: 'invalid_dpop_proof', status: 400, description: 'the DPoP proof has already been used' },
  // A DPoP-bound token presented as the caller's credential (RFC 9449 §7.1, §7.2).
  dpop_bound_token: {
    code: 'invalid_token',
    status: 401,
    description: 'the token is DPoP-bound: present it as Authorization: DPoP with a DPoP proof of this request',
  },
  dpop_unbound_token: {
    code: 'invalid_token',
    status: 401,
    description: 'the DPoP scheme needs a DPoP-bound token: present this one as Authorization: Bearer',
  },
  dpop_proof_refused: {
    code: 'invalid_dpop_proof',
    status: 401,
    description: 'the DPoP proof is not valid for this request and token',
  },
  dpop_proof_reused: { code: 'invalid_dpop_proof', status: 401, description: 'the DPoP proof has already been used' },
  dpop_nonce_required: {
    code: 'use_dpop_nonce',
    status: 400,
    description: 'the DPoP proof must carry the nonce given in the DPoP-Nonce header',
  },
  // Authorization gate: policy.
  audience_not_granted: { code: 'invalid_target', status: 400, description: 'audience is not granted to this agent' },
  action_not_granted: { code: 'invalid_scope', status: 400, description: 'a requested action is not granted' },
  justification_required: {
    code: 'invalid_scope',
    status: 400,
    description: 'a requested action needs a written task.justification',
  },
  // State gates: the agent's durable state and the global kill switch.
  agent_suspended: { code: 'access_denied', status: 403, description: 'the agent is suspended' },
  agent_expired: { code: 'access_denied', status: 403, description: 'the agent has expired' },
  kill_switch_engaged: {
    code: 'access_denied',
    status: 403,
    description: 'token issuance is stopped by the global kill switch',
  },
  rate_limited: { code: 'slow_down', status: 429, description: 'too many token requests; retry after the delay given' },
  task_finished: { code: 'invalid_request', status: 400, description: 'the task is finished' },
  // Step-up approval (OpenID CIBA poll mode, §11).
  approval_required: {
    code: 'authorization_pending',
    status: 400,
    description: 'a requested action needs approval; poll with approval_id',
  },
  approval_pending: { code: 'authorization_pending', status: 400, description: 'the approval is not decided yet' },
  approval_poll_too_fast: { code: 'slow_down', status: 400, description: 'polling faster than the interval' },
  approval_denied: { code: 'access_denied', status: 400, description: 'the approval was denied' },
  approval_expired: { code: 'expired_token', status: 400, description: 'the approval expired before a decision' },
  approval_unknown: { code: 'invalid_grant', status: 400, description: 'no such approval for this agent' },
  approval_used: { code: 'invalid_grant', status: 400, description: 'the approval has already been used' },
  approval_mismatch: {
    code: 'invalid_grant',
    status: 400,
    description: 'the request differs from the one the approval is for',
  },
  approval_not_pending: { code: 'invalid_request', status: 400, description: 'the approval is no longer pending' },
  approver_not_allowed: {
    code: 'access_denied',
    status: 403,
    description: 'this approver may not decide this approval',
  },
  // An API's credential at the introspection endpoint (RFC 7662 §2.1, RFC 6749 §5.2 invalid_client).
  client_auth_required: {
    code: 'invalid_client',
    status: 401,
    description: 'introspection needs the API credential: HTTP Basic with the audience as client id',
  },
  client_auth_invalid: { code: 'invalid_client', status: 401, description: 'the API credential is not valid' },
  // Bearer tokens and admin credentials (RFC 6750 §3.1).
  credential_required: { code: 'invalid_token', status: 401, description: 'a credential is required' },
  credential_invalid: { code: 'invalid_token', status: 401, description: 'the credential is not valid' },
  role_required: { code: 'insufficient_scope', status: 403, description: 'the credential lacks the required role' },
  cross_origin: {
    code: 'access_denied',
    status: 403,
    description: 'an admin change is taken from the console on this origin or from a client that is not a browser',
  },
  wrong_task: { code: 'insufficient_scope', status: 403, description: 'the token belongs to another task' },
  unknown_target: { code: 'not_found', status: 404, description: 'no such agent, token, task or approval' },
  // Broker faults: fail closed.
  store_unavailable: {
    code: 'temporarily_unavailable',
    status: 503,
    description: 'the broker cannot reach its state; no token was issued',
  },
  signing_unavailable: {
    code: 'temporarily_unavailable',
    status: 503,
    description: 'the broker cannot reach its signing keys; no token was issued',
  },
  audit_unavailable: {
    code: 'temporarily_unavailable',
    status: 503,
    description: 'the broker cannot write its audit log; no token was issued',
  },
  internal_error: { code: 'server_error', status: 500, description: 'internal error' },
  // Routing.
  not_found: { code: 'not_found', status: 404, description: 'no such endpoint' },
  method_not_allowed: { code: 'method_not_allowed', status: 405, description: 'method not allowed on this endpoint' },
} as const satisfies Record<string, ReasonSpec>;

/** The internal, audited reason for a refusal. */
export type Reason = keyof typeof REASONS;

/** The public OAuth code of a refusal's reason; null for a reason that is recorded but never answered. */
export function reasonCode(reason: string): ErrorCode | null {
  return Object.hasOwn(REASONS, reason) ? REASONS[reason as Reason].code : null;
}

/**
 * A refusal or fault on a request path. Built with {@link refuse}; turned into a response in one place.
 */
export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  readonly code: ErrorCode;
  readonly status: ReasonSpec['status'];
  /** Public text: safe to return to the caller. */
  readonly description: string;
  /** Response headers the refusal needs (`Retry-After`, `WWW-Authenticate`). */
  readonly headers: Readonly<Record<string, string>>;
  /** Extra public members of the error body (`approval_id`, `interval`, `expires_in`). */
  readonly body: Readonly<Record<string, string | number>>;
  /** True when the Durable Object that decided the refusal has recorded it already. */
  readonly recorded: boolean;

  constructor(
    readonly reason: Reason,
    /** Internal detail for the audit log; never returned to the caller. */
    readonly detail: Readonly<Record<string, unknown>> = {},
    options?: RefusalOptions,
  ) {
    const spec: ReasonSpec = REASONS[reason];
    super(`${reason}: ${spec.description}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = spec.code;
    this.status = spec.status;
    this.description = options?.description ?? spec.description;
    this.headers = options?.headers ?? {};
    this.body = options?.body ?? {};
    this.recorded = options?.recorded ?? false;
  }
}

export interface RefusalOptions {
  cause?: unknown;
  /** Replaces the generic public description where the detail is safe and useful to the caller. */
  description?: string;
  headers?: Record<string, string>;
  body?: Record<string, string | number>;
  /** The Durable Object that decided the refusal recorded it with its decision. */
  recorded?: boolean;
}

/** Creates a refusal for `reason`, with internal `detail` for the audit log. */
export function refuse(reason: Reason, detail?: Record<string, unknown>, options?: RefusalOptions): BrokerError {
  return new BrokerError(reason, detail, options);
}

/**
 * A piece of the caller's input quoted in a public description: printable ASCII without `"` and `\` (the
 * characters RFC 6749 §5.2 allows in `error_description`), anything else as `?`, at most 64 characters.
 */
export function publicEcho(input: string): string {
  const safe = input.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '?');
  return safe.length > 64 ? `${safe.slice(0, 61)}...` : safe;
}

/** The public text of each kind of thing an admin call can name that does not exist. */
export const NOT_FOUND_HINTS = {
  agent: 'no such agent in the inventory (policies/agents.yaml)',
  token: 'no token was issued with that jti',
  task: 'no agent asked for a token for that task',
  approval: 'no such approval',
  segment: 'no such archive segment',
} as const;

/** What an admin call names that does not exist: 404, saying which kind of thing was not found. */
export function notFound(
  kind: keyof typeof NOT_FOUND_HINTS,
  detail: Record<string, unknown>,
  options?: RefusalOptions,
) {
  return refuse('unknown_target', detail, { ...options, description: NOT_FOUND_HINTS[kind] });
}

/** A failure of a key source itself (a JWKS that does not answer), as opposed to a bad token. */
export class KeySourceError extends Error {
  override readonly name = 'KeySourceError';
}
