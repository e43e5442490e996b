/**
 * The audit record of a decision endpoint other than `/token` (which has its own pipeline): opened with the
 * request's origin before anything else runs, filled in by the handler, and committed either with the change
 * it records (by the Durable Object that makes the change), by {@link recordGranted} for a read or a change
 * no single object holds, or, for a refusal, by the error handler ({@link recordRefusal}, where
 * `worker/audit/refusals.ts` says the record goes, as it does for `/token`).
 */
import { createMiddleware } from 'hono/factory';
import { type AuditDraft, decideRecord } from '../audit/record';
import * as refusals from '../audit/refusals';
import { refuse } from '../core/errors';
import { clip } from '../core/well-formed';
import { loadedPolicy } from '../policy/loaded';
import { agentStore } from '../stores/agents';
import { recordInIntake, recordPolledRead, recordUnverified } from '../stores/audit-log';

type AuditedEnv = { Bindings: Env; Variables: { audit: AuditDraft } };

/** The request's origin: when, from where, with which user agent. */
export function requestOrigin(request: Request) {
  const userAgent = request.headers.get('user-agent');
  return {
    at: Date.now(),
    ip: request.headers.get('cf-connecting-ip'),
    colo: (request.cf?.colo as string | undefined) ?? null,
    userAgent: userAgent === null ? null : clip(userAgent, 256),
  };
}

/** Opens the audit record for `event` with the request's origin. */
export function startAudit(event: string) {
  return createMiddleware<AuditedEnv>(async function startAudit(c, next) {
    c.set('audit', { ...requestOrigin(c.req.raw), event, details: {} });
    await next();
  });
}

/**
 * Records the request's decision as granted, in an intake shard: for reads, and for changes no single
 * object records with the change.
 *
 * @throws {BrokerError} `audit_unavailable` (503) when it cannot be recorded: the caller must not report
 *   success without its record (an admin retries).
 */
export async function recordGranted(c: { env: Env; var: { audit: AuditDraft } }): Promise<void> {
  await committed(() => recordInIntake(c.env, grantedRecord(c.var.audit)));
}

/**
 * Records an admin's read that a console polls (`admin.whoami`, `admin.approval.list`), sampled per admin:
 * the first of a window in full, the rest counted into its summary. Never for a change.
 *
 * @throws {BrokerError} `audit_unavailable` (503), as {@link recordGranted}.
 */
export async function recordRead(c: { env: Env; var: { audit: AuditDraft } }): Promise<void> {
  await committed(() => recordPolledRead(c.env, grantedRecord(c.var.audit)));
}

const grantedRecord = (draft: AuditDraft) =>
  decideRecord(draft, { decision: 'granted' }, loadedPolicy().bundle.version);

/** Runs `work`, which commits a record; one that cannot be committed refuses the request. */
async function committed(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    throw refuse('audit_unavailable', { message: String(error) }, { cause: error });
  }
}

/** The stores a refusal's record may go to, on `env`. */
function refusalStores(env: Env): refusals.RefusalStores {
  return {
    agents: agentStore(env),
    recordInIntake: (record) => recordInIntake(env, record),
    recordUnverified: (record) => recordUnverified(env, record),
  };
}

/**
 * Records a refusal no Durable Object recorded (see {@link refusals.recordRefusal}): in the agent's chain when
 * the request names an agent, in an intake shard in full when the caller is known (an admin), sampled when it
 * is not. A failure is logged: the refusal is answered anyway.
 */
export function recordRefusal(env: Env, draft: AuditDraft, outcome: refusals.RefusedOutcome): Promise<void> {
  return refusals.recordRefusal(refusalStores(env), draft, outcome, loadedPolicy().bundle.version);
}
