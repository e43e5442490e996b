/**
 * `POST /introspect` (RFC 7662): whether a token is active, and its claims if so. A token is inactive when
 * its signature, issuer or expiry fail, or when its agent's state (revoked token, revoked-before, suspended,
 * finished task) or the global kill switch says so. A state store that does not answer is a 503, never a
 * guess. The kill switch is read from the isolate's lease, like `/token`: once an engage has answered, every
 * token reads inactive.
 */
import { Hono } from 'hono';
import type { AppEnv } from '../http/app-env';
import { checkOwnToken } from '../http/bearer';
import { NO_STORE } from '../http/errors';
import { agentStore } from '../stores/agents';
import { admissionDeadlineMs, killSwitchLease, leaseRemainingMs } from '../stores/kill-switch';
import { readTokenParameter } from './revocation';

export const introspectionRoutes = new Hono<AppEnv>();

introspectionRoutes.post('/introspect', async function introspect(c) {
  const leased = killSwitchLease(c.env, (work) => c.executionCtx.waitUntil(work));
  leased.catch(() => undefined);
  const check = await checkOwnToken(c.env, await readTokenParameter(c.req.raw));
  if (!check.valid) return c.json({ active: false }, 200, NO_STORE);
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
