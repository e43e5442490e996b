/**
 * Ending tokens early: `POST /revoke` (RFC 7009) for whoever holds a token, and
 * `POST /tasks/{task_id}/complete` for the agent when its task is done. Both answer only once the agent's
 * object has durably recorded the change, with its audit record. A DPoP-bound token does either only with
 * a proof of the request, signed by its key, and each proof once (RFC 9449 §7.1): a copy of the token alone
 * ends nothing.
 */
import { Hono } from 'hono';
import { z } from 'zod';
import type { ProvenChange } from '../agents/agent-state';
import type { AccessTokenClaims } from '../core/access-token';
import { refuse } from '../core/errors';
import { clip } from '../core/well-formed';
import type { AppEnv } from '../http/app-env';
import { recordRefusal, startAudit } from '../http/audit-trail';
import { challenge, checkOwnToken, dpopChallenge, presentedCredential, TOKEN_REALM } from '../http/bearer';
import { proofOfPossession, type TokenPresentation } from '../http/dpop';
import { NO_STORE } from '../http/errors';
import { brokerIssuer } from '../http/issuer';
import { readFields } from '../http/read-body';
import { loadedPolicy } from '../policy/loaded';
import { agentStore } from '../stores/agents';

const TokenField = z.object({
  token: z
    .string()
    .min(1)
    .max(16 * 1024),
  token_type_hint: z.string().optional(),
});

/** Reads the `token` parameter of an RFC 7009 / RFC 7662 request. */
export async function readTokenParameter(request: Request): Promise<string> {
  const parsed = TokenField.safeParse(await readFields(request));
  if (!parsed.success) throw refuse('invalid_field', { field: 'token' }, { description: 'missing token' });
  return parsed.data.token;
}

/** The proof the request carries for `token`, checked (RFC 9449 §7.1); its replay key when the token is bound. */
function proofFor(
  env: Env,
  request: Request,
  scheme: TokenPresentation['scheme'],
  token: string,
  claims: AccessTokenClaims,
) {
  const presented: TokenPresentation = {
    scheme,
    token,
    claims,
    proof: request.headers.get('dpop'),
    method: request.method,
    url: `${brokerIssuer(env)}${new URL(request.url).pathname}`,
  };
  return proofOfPossession(presented, loadedPolicy().bundle.settings.dpop, new Date());
}

/** Refuses a change whose proof the agent's object found used before (and recorded so). */
function checkProven(change: ProvenChange): void {
  if (change === 'proof_replayed')
    throw refuse(
      'dpop_proof_reused',
      {},
      { recorded: true, headers: dpopChallenge(TOKEN_REALM, 'invalid_dpop_proof') },
    );
}

export const revocationRoutes = new Hono<AppEnv>();

revocationRoutes.post('/revoke', startAudit('token.revoke'), async function revokeToken(c) {
  const token = await readTokenParameter(c.req.raw);
  const check = await checkOwnToken(c.env, token);
  if (!check.valid) {
    // RFC 7009 §2.2: an invalid token is answered like a revoked one; the attempt is still recorded.
    await recordRefusal(
      c.env,
      { ...c.var.audit, details: { token: check.reason } },
      { decision: 'refused', reason: 'invalid_token' },
    );
    return c.json({}, 200, NO_STORE);
  }
  const { claims } = check;
  Object.assign(c.var.audit, {
    agent: claims.sub,
    owner: claims.owner,
    audience: claims.aud,
    taskId: claims.task.id,
    tokenJti: claims.jti,
    tokenExp: claims.exp,
  });
  const proof = await proofFor(c.env, c.req.raw, 'parameter', token, claims);
  checkProven(await agentStore(c.env).revokeToken(claims.sub, claims.jti, claims.exp, c.var.audit, proof));
  return c.json({}, 200, NO_STORE);
});

revocationRoutes.post('/tasks/:task_id/complete', startAudit('task.complete'), async function completeTask(c) {
  const taskId = c.req.param('task_id');
  c.var.audit.taskId = clip(taskId, 128);
  const presented = presentedCredential(c);
  if (presented === undefined) throw refuse('credential_required', {}, { headers: challenge(TOKEN_REALM) });
  const check = await checkOwnToken(c.env, presented.credential);
  if (!check.valid) {
    throw refuse('credential_invalid', { token: check.reason }, { headers: challenge(TOKEN_REALM, 'invalid_token') });
  }
  const { claims } = check;
  Object.assign(c.var.audit, { agent: claims.sub, owner: claims.owner, audience: claims.aud, tokenJti: claims.jti });
  if (claims.task.id !== taskId) {
    throw refuse(
      'wrong_task',
      { tokenTask: claims.task.id },
      { headers: challenge(TOKEN_REALM, 'insufficient_scope') },
    );
  }
  const proof = await proofFor(c.env, c.req.raw, presented.scheme, presented.credential, claims);
  checkProven(await agentStore(c.env).finishTask(claims.sub, taskId, c.var.audit, proof));
  return c.json({ task_id: taskId, completed: true }, 200, NO_STORE);
});
