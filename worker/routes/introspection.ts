/**
 * `POST /introspect` (RFC 7662): whether a token is active, and its claims if so, for the API the token is
 * for. The API authenticates (§2.1) with HTTP Basic: its audience as the client id and its introspection
 * credential as the password (RFC 6749 §2.3.1), checked against the hash in `policies/apis.yaml`; a caller
 * that does not is refused with 401 `invalid_client`. A token for another audience is `active: false` to
 * it (§2.2), and so is a token whose signature, issuer or expiry fail, or whose agent's state (revoked
 * token, revoked-before, suspended, finished task) or the global kill switch says so. A state store that
 * does not answer is a 503, never a guess. The kill switch is read from the isolate's lease, like `/token`:
 * once an engage has answered, every token reads inactive.
 */
import { Hono } from 'hono';
import { refuse } from '../core/errors';
import { basicCredentials, introspectionSecret } from '../core/introspection-credential';
import { secretMatches } from '../core/secret-match';
import { clip } from '../core/well-formed';
import type { AppEnv } from '../http/app-env';
import { startAudit } from '../http/audit-trail';
import { checkOwnToken } from '../http/bearer';
import { NO_STORE } from '../http/errors';
import { type Api, declaredApi } from '../policy/bundle';
import { loadedPolicy } from '../policy/loaded';
import { agentStore } from '../stores/agents';
import { admissionDeadlineMs, killSwitchLease, leaseRemainingMs } from '../stores/kill-switch';
import { readTokenParameter } from './revocation';

/** RFC 6749 §5.2: a client that failed HTTP Basic is challenged with the scheme it used. */
const CHALLENGE = { 'WWW-Authenticate': 'Basic realm="tessera-introspection"' };

/**
 * The API the request authenticates as (RFC 7662 §2.1): an unknown audience costs what a wrong secret does.
 *
 * @throws {BrokerError} 401 `invalid_client`: `client_auth_required` without `Authorization`,
 *   `client_auth_invalid` for anything else that is not a declared API's credential.
 */
async function authenticatedApi(request: Request): Promise<Api> {
  const authorization = request.headers.get('authorization');
  if (authorization === null) throw refuse('client_auth_required', {}, { headers: CHALLENGE });
  const basic = basicCredentials(authorization);
  if (basic === undefined) throw refuse('client_auth_invalid', { scheme: 'not_basic' }, { headers: CHALLENGE });
  const api = declaredApi(loadedPolicy().bundle, basic.clientId);
  const secret = introspectionSecret(basic.password);
  const matches = await secretMatches(secret ?? '', api?.introspectionSecretSha256);
  if (api === undefined || secret === undefined || !matches)
    throw refuse('client_auth_invalid', { clientId: clip(basic.clientId, 128) }, { headers: CHALLENGE });
  return api;
}

export const introspectionRoutes = new Hono<AppEnv>();

introspectionRoutes.post('/introspect', startAudit('token.introspect'), async function introspect(c) {
  const api = await authenticatedApi(c.req.raw);
  const leased = killSwitchLease(c.env, (work) => c.executionCtx.waitUntil(work));
  leased.catch(() => undefined);
  const check = await checkOwnToken(c.env, await readTokenParameter(c.req.raw));
  // §2.2: a token the caller is not the audience of is, to that caller, not active.
  if (!check.valid || check.claims.aud !== api.audience) return c.json({ active: false }, 200, NO_STORE);
  const { claims } = check;
  const { lease } = await leased;
  if (lease.engaged) return c.json({ active: false }, 200, NO_STORE);
  const ref = { jti: claims.jti, taskId: claims.task.id, iat: claims.iat };
  const deadline = Math.min(admissionDeadlineMs(c.env), leaseRemainingMs(lease));
  const status = await agentStore(c.env).tokenStatus(claims.sub, ref, Math.max(1, deadline));
  // Answered only while the lease holds: an engage that has answered makes every token inactive.
  if (!status.active || leaseRemainingMs(lease) <= 0) return c.json({ active: false }, 200, NO_STORE);
  const tokenType = claims.cnf === undefined ? 'Bearer' : 'DPoP';
  return c.json({ active: true, token_type: tokenType, ...claims }, 200, NO_STORE);
});
