/**
 * The HTTP side of verifying a request, shared by `@tessera/verify/hono` and `@tessera/verify/mcp`: reading
 * the credential off `Authorization` and `DPoP`, and answering a refusal with an RFC 6750 / RFC 9449 challenge.
 */
import { DPOP_ALGORITHMS } from './dpop.js';
import { VerifyError } from './errors.js';
import { type AgentTokenClaims, type VerifyAgentTokenOptions, verifyAgentToken } from './token.js';

type Credential = { scheme: 'Bearer' | 'DPoP'; token: string } | undefined;

/**
 * `Authorization: Bearer <token>` (RFC 6750 §2.1) or `DPoP <token>` (RFC 9449 §7.1), in the b64token syntax.
 * That syntax allows padding and `+`, `/`, `~`: `verifyAgentToken` then refuses all but the one canonical
 * spelling of a JWT, before anything else.
 */
function credential(header: string | null | undefined): Credential | 'malformed' {
  if (header === undefined || header === null || header === '') return undefined;
  const match = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
  if (match === null) return 'malformed';
  return { scheme: match[1]?.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer', token: match[2] as string };
}

/** A quoted-string for a challenge parameter: printable ASCII only, no quote or backslash (RFC 9110 §5.6.4). */
function quoted(value: string): string {
  return `"${value.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '')}"`;
}

/** What a request presented, as the verifier needs it. */
export interface PresentedRequest {
  authorization: string | null | undefined;
  dpop: string | null | undefined;
  method: string;
  /** The URL the client called: a DPoP proof's `htu` must match it. */
  url: string;
}

/** The claims of an accepted request, or the refusal and whether its challenge must be a `DPoP` one. */
export type RequestVerdict =
  | { ok: true; claims: AgentTokenClaims }
  | { ok: false; error: VerifyError; dpopChallenge: boolean };

/**
 * Verifies the token a request presented (RFC 6750 §2.1 or RFC 9449 §7.1) with `options`. A refusal is a
 * verdict; anything but a {@link VerifyError} (a misconfiguration) is thrown.
 */
export async function verifyRequest(
  request: PresentedRequest,
  options: Omit<VerifyAgentTokenOptions, 'dpop'>,
): Promise<RequestVerdict> {
  const presented = credential(request.authorization);
  const requireDpop = options.requireDpop === true;
  if (presented === undefined) {
    return { ok: false, error: new VerifyError('missing_token', 'a token is required'), dpopChallenge: requireDpop };
  }
  if (presented === 'malformed') {
    const error = new VerifyError('malformed', 'the Authorization header is not a Bearer or DPoP token');
    return { ok: false, error, dpopChallenge: requireDpop };
  }
  const proof = request.dpop ?? undefined;
  try {
    // A JWT has no comma: one that does is several DPoP headers joined, which RFC 9449 §4.3 refuses.
    if (proof?.includes(',')) throw new VerifyError('dpop_invalid', 'more than one DPoP header');
    const claims = await verifyAgentToken(presented.token, {
      ...options,
      ...(presented.scheme === 'DPoP' && { dpop: { proof, method: request.method, url: request.url } }),
    });
    return { ok: true, claims };
  } catch (error) {
    if (!(error instanceof VerifyError)) throw error;
    const dpopChallenge = presented.scheme === 'DPoP' || requireDpop || error.code === 'dpop_required';
    return { ok: false, error, dpopChallenge };
  }
}

/**
 * The refusal's answer: a `WWW-Authenticate` challenge with `params` first, then the error and its public
 * description only (the message, which may quote the token, is for logs), and the same in an OAuth body.
 */
export function refusal(
  error: VerifyError,
  dpopChallenge: boolean,
  params: readonly (readonly [name: string, value: string])[],
): Response {
  const all = [...params];
  if (error.error !== undefined) all.push(['error', error.error], ['error_description', error.description]);
  const joined = all.map(([name, value]) => `${name}=${quoted(value)}`).join(', ');
  const challenge = dpopChallenge ? `DPoP ${joined}, algs=${quoted(DPOP_ALGORITHMS.join(' '))}` : `Bearer ${joined}`;
  const body =
    error.status === 503
      ? { error: 'temporarily_unavailable', error_description: error.description }
      : { error: error.error ?? 'invalid_request', error_description: error.description };
  return Response.json(body, {
    status: error.status,
    headers: { 'WWW-Authenticate': challenge, 'Cache-Control': 'no-store' },
  });
}
