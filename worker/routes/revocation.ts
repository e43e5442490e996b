/**
 * Ending tokens early: `POST /revoke` (RFC 7009) for whoever holds a token, and
 * `POST /tasks/{task_id}/complete` for the agent when its task is done. Both answer only once the agent's
 * object has durably recorded the change, with its audit record.
 */
import { Hono } from 'hono';
import { z } from 'zod';
import { refuse } from '../core/errors';
import { clip } from '../core/well-formed';
import type { AppEnv } from '../http/app-env';
import { recordRefusal, startAudit } from '../http/audit-trail';
import { bearerCredential, challenge, checkOwnToken } from '../http/bearer';
import { NO_STORE } from '../http/errors';
import { readFields } from '../http/read-body';
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

export const revocationRoutes = new Hono<AppEnv>();

revocationRoutes.post('/revoke', startAudit('token.revoke'), async function revokeToken(c) {
  const check = await checkOwnToken(c.env, await readTokenParameter(c.req.raw));
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
  await agentStore(c.env).revokeToken(claims.sub, claims.jti, claims.exp, c.var.audit);
  return c.json({}, 200, NO_STORE);
});

revocationRoutes.post('/tasks/:task_id/complete', startAudit('task.complete'), async function completeTask(c) {
  const taskId = c.req.param('task_id');
  c.var.audit.taskId = clip(taskId, 128);
  const token = bearerCredential(c);
  if (token === undefined) throw refuse('credential_required', {}, { headers: challenge('tessera') });
  const check = await checkOwnToken(c.env, token);
  if (!check.valid) {
    throw refuse('credential_invalid', { token: check.reason }, { headers: challenge('tessera', 'invalid_token') });
  }
  const { claims } = check;
  Object.assign(c.var.audit, { agent: claims.sub, owner: claims.owner, audience: claims.aud, tokenJti: claims.jti });
  if (claims.task.id !== taskId) {
    throw refuse('wrong_task', { tokenTask: claims.task.id }, { headers: challenge('tessera', 'insufficient_scope') });
  }
  await agentStore(c.env).finishTask(claims.sub, taskId, c.var.audit);
  return c.json({ task_id: taskId, completed: true }, 200, NO_STORE);
});
