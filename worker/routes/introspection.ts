/**
 * `POST /introspect` (RFC 7662): whether a token is active, and its claims if so. A token is inactive when
 * its signature, issuer or expiry fail, or when its agent's state (revoked token, revoked-before, suspended,
 * finished task) or the global kill switch says so. A state store that does not answer is a 503, never a
 * guess. Open to any caller: the claims are those the token itself carries.
 */
import { Hono } from 'hono';
import type { AppEnv } from '../http/app-env';
import { checkOwnToken } from '../http/bearer';
import { NO_STORE } from '../http/errors';
import { limitBody } from '../http/limits';
import { tokenLiveness } from '../state/gates';
import { readTokenParameter } from './revocation';

export const introspectionRoutes = new Hono<AppEnv>();

introspectionRoutes.post('/introspect', limitBody, async function introspect(c) {
  const check = await checkOwnToken(c.env, await readTokenParameter(c.req.raw));
  if (!check.valid) return c.json({ active: false }, 200, NO_STORE);
  const { claims } = check;
  const liveness = await tokenLiveness(c.env, claims.sub, { jti: claims.jti, taskId: claims.task.id, iat: claims.iat });
  if (!liveness.active) return c.json({ active: false }, 200, NO_STORE);
  const tokenType = claims.cnf === undefined ? 'Bearer' : 'DPoP';
  return c.json({ active: true, token_type: tokenType, ...claims }, 200, NO_STORE);
});
