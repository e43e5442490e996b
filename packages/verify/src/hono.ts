/**
 * `@tessera/verify/hono`: `requireAgent`, Hono middleware that lets a request through only with a valid
 * Tessera token granting the route's actions, and answers RFC 6750 / RFC 9449 challenges otherwise. Hono is
 * an optional peer dependency, imported for types only: nothing of it is loaded at run time.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { checkIntrospectionOptions } from './introspection.js';
import { refusal, verifyRequest } from './request.js';
import { StatusLists } from './status-check.js';
import type { AgentTokenClaims, VerifyAgentTokenOptions } from './token.js';

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
    const verdict = await verifyRequest(
      {
        authorization: c.req.header('authorization'),
        dpop: c.req.header('dpop'),
        method: c.req.method,
        url: publicUrl?.(c) ?? c.req.url,
      },
      verifyOptions,
    );
    if (!verdict.ok) return refusal(verdict.error, verdict.dpopChallenge, [['realm', realm]]);
    c.set('agent', verdict.claims);
    await next();
  };
}
