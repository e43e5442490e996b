/**
 * The audit record of a decision endpoint: opened with the request's origin before anything else runs,
 * filled in by the handler, and written either by the handler ({@link commitAudit}) or, for a refusal, by
 * the error handler.
 */
import { createMiddleware } from 'hono/factory';
import { type AuditDraft, writeAudit } from '../audit/store';
import { refuse } from '../core/errors';
import { loadedPolicy } from '../policy/loaded';

type AuditedEnv = { Bindings: Env; Variables: { audit: AuditDraft } };

/** Opens the audit record for `event` with the request's origin. */
export function startAudit(event: string) {
  return createMiddleware<AuditedEnv>(async function startAudit(c, next) {
    c.set('audit', {
      at: Date.now(),
      event,
      ip: c.req.header('cf-connecting-ip') ?? null,
      colo: (c.req.raw.cf?.colo as string | undefined) ?? null,
      userAgent: c.req.header('user-agent')?.slice(0, 256) ?? null,
      details: {},
    });
    await next();
  });
}

/**
 * Writes the request's audit record as granted and waits for D1 to commit it.
 *
 * @throws {BrokerError} `audit_unavailable` (503) when it cannot be written: the caller must not report
 *   success without its record (an admin retries; a token is not returned).
 */
export async function commitAudit(c: { env: Env; var: { audit: AuditDraft } }): Promise<void> {
  try {
    await writeAudit(c.env.AUDIT_DB, c.var.audit, {
      decision: 'granted',
      policyVersion: loadedPolicy().bundle.version,
    });
  } catch (error) {
    throw refuse('audit_unavailable', { message: String(error) }, { cause: error });
  }
}
