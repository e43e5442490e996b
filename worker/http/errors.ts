/**
 * The one place errors become responses: a {@link BrokerError} becomes `{ error, error_description }` with
 * its status; anything else is logged and becomes a generic 500 with no detail. On a decision endpoint the
 * refusal is audited first.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { writeAudit } from '../audit/store';
import { BrokerError, refuse } from '../core/errors';
import { loadedPolicy } from '../policy/loaded';
import type { AppEnv } from './app-env';

/** Headers for every token-endpoint answer (RFC 6749 §5.1, RFC 8693 §2.2.1). */
export const NO_STORE = { 'Cache-Control': 'no-store', Pragma: 'no-cache' } as const;

export function errorResponse(error: BrokerError): Response {
  return Response.json(
    { ...error.body, error: error.code, error_description: error.description },
    { status: error.status, headers: { ...NO_STORE, ...error.headers } },
  );
}

function asBrokerError(error: unknown): BrokerError {
  if (error instanceof BrokerError) return error;
  // Hono's own refusals (e.g. a body it cannot read) are malformed requests, not faults.
  if (error instanceof HTTPException && error.status < 500) return refuse('malformed_body', { message: error.message });
  console.error('unexpected error', error);
  return refuse('internal_error', { error: error instanceof Error ? error.name : typeof error });
}

/** Hono `onError`: audits a refusal on a decision endpoint, then answers in the spec's error shape. */
export async function handleError(error: unknown, c: Context<AppEnv>): Promise<Response> {
  const refusal = asBrokerError(error);
  const draft = c.get('audit');
  if (draft !== undefined) {
    try {
      await writeAudit(
        c.env.AUDIT_DB,
        { ...draft, details: { ...draft.details, ...refusal.detail } },
        {
          decision: 'refused',
          errorCode: refusal.code,
          reason: refusal.reason,
          policyVersion: loadedPolicy().bundle.version,
        },
      );
    } catch (auditError) {
      console.error('audit write failed for a refusal', refusal.reason, auditError);
    }
  }
  return errorResponse(refusal);
}
