/**
 * `@tessera/verify/hono`: `requireAgent`, Hono middleware that lets a request through only with a valid
 * Tessera token granting the route's actions, and answers RFC 6750 / RFC 9449 challenges otherwise. Hono is
 * an optional peer dependency, imported for types only: nothing of it is loaded at run time.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { DPOP_ALGORITHMS } from './dpop.js';
import { VerifyError } from './errors.js';
import { checkIntrospectionOptions } from './introspection.js';
import { StatusLists } from './status-check.js';
import { type AgentTokenClaims, type VerifyAgentTokenOptions, verifyAgentToken } from './token.js';

/** What `requireAgent` sets on the context: `c.get('agent')`. */
export type AgentVariables = { agent: AgentTokenClaims };

export type RequireAgentOptions = Omit<VerifyAgentTokenOptions, 'dpop' | 'now'> & {
  /** The `realm` of the challenge; default the audience. */
  realm?: string;
  /**
   * The URL clients call, when it differs from the one the Worker sees (behind a proxy): a proof's
   * `htu` must match it. Default `c.req.url`.
   */
  publicUrl?: (c: Context) => string;
};

type Credential = { scheme: 'Bearer' | 'DPoP'; token: string } | undefined;

/**
 * `Authorization: Bearer <token>` (RFC 6750 §2.1) or `DPoP <token>` (RFC 9449 §7.1), in the b64token syntax.
 * That syntax allows padding and `+`, `/`, `~`: `verifyAgentToken` then refuses all but the one canonical
 * spelling of a JWT, before anything else.
 */
function credential(header: string | undefined): Credential | 'malformed' {
  if (header === undefined || header === '') return undefined;
  const match = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
  if (match === null) return 'malformed';
  return { scheme: match[1]?.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer', token: match[2] as string };
}

/** A quoted-string for a challenge parameter: printable ASCII only, no quote or backslash (RFC 9110 §5.6.4). */
function quoted(value: string): string {
  return `"${value.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '')}"`;
}

/** The refusal's answer: its public description only (the message, which may quote the token, is for logs). */
function refusal(error: VerifyError, realm: string, dpopChallenge: boolean): Response {
  const params = [`realm=${quoted(realm)}`];
  if (error.error !== undefined)
    params.push(`error=${quoted(error.error)}`, `error_description=${quoted(error.description)}`);
  const challenge = dpopChallenge
    ? `DPoP ${params.join(', ')}, algs=${quoted(DPOP_ALGORITHMS.join(' '))}`
    : `Bearer ${params.join(', ')}`;
  const body =
    error.status === 503
      ? { error: 'temporarily_unavailable', error_description: error.description }
      : { error: error.error ?? 'invalid_request', error_description: error.description };
  return Response.json(body, {
    status: error.status,
    headers: { 'WWW-Authenticate': challenge, 'Cache-Control': 'no-store' },
  });
}

/**
 * Requires a Tessera access token for `audience` granting every action in `actions`; sets the verified
 * claims as `c.get('agent')`. Refuses with `401` (no or bad token, bad DPoP proof, a status list that says
 * it is revoked or suspended), `403` (an action is missing) or `503` (the broker's keys, the token's status
 * list or introspection did not answer), each with a `WWW-Authenticate` challenge. Status lists are cached
 * by the middleware's own {@link StatusLists} unless `statusLists` gives one.
 *
 * @example
 * import { type AgentVariables, requireAgent } from '@tessera/verify/hono';
 *
 * const app = new Hono<{ Variables: AgentVariables }>();
 * app.post(
 *   '/tickets/:id/comments',
 *   requireAgent({ issuer: 'https://tessera.example.com', audience: 'https://tickets.example.com', actions: ['tickets:comment'] }),
 *   (c) => c.json({ by: c.get('agent').sub, task: c.get('agent').task.id }),
 * );
 *
 * @throws {TypeError} at creation when `issuer` or `audience` is missing, or `introspection` has no
 *   credential. On a request, when the broker's metadata names another issuer than `issuer` or the broker
 *   refuses the introspection credential (a misconfiguration, not a bad token): it reaches the app's error
 *   handler, which answers 500.
 */
export function requireAgent(options: RequireAgentOptions): MiddlewareHandler<{ Variables: AgentVariables }> {
  if (typeof options.issuer !== 'string' || options.issuer === '') throw new TypeError('issuer is required');
  if (typeof options.audience !== 'string' || options.audience === '') throw new TypeError('audience is required');
  checkIntrospectionOptions(options.introspection);
  const { realm = options.audience, publicUrl, statusLists = new StatusLists(), ...rest } = options;
  const verifyOptions = { ...rest, statusLists };

  return async function requireAgentToken(c, next) {
    const presented = credential(c.req.header('authorization'));
    const dpopChallenge = presented !== 'malformed' && presented?.scheme === 'DPoP';
    if (presented === undefined || presented === 'malformed') {
      const error =
        presented === undefined
          ? new VerifyError('missing_token', 'a token is required')
          : new VerifyError('malformed', 'the Authorization header is not a Bearer or DPoP token');
      return refusal(error, realm, options.requireDpop === true);
    }
    const proof = c.req.header('dpop');
    try {
      // A JWT has no comma: one that does is several DPoP headers joined, which RFC 9449 §4.3 refuses.
      if (proof?.includes(',')) throw new VerifyError('dpop_invalid', 'more than one DPoP header');
      const claims = await verifyAgentToken(presented.token, {
        ...verifyOptions,
        ...(presented.scheme === 'DPoP' && {
          dpop: { proof, method: c.req.method, url: publicUrl?.(c) ?? c.req.url },
        }),
      });
      c.set('agent', claims);
    } catch (error) {
      if (!(error instanceof VerifyError)) throw error;
      return refusal(error, realm, dpopChallenge || options.requireDpop === true || error.code === 'dpop_required');
    }
    await next();
  };
}
