/**
 * The one place errors become responses: a {@link BrokerError} becomes `{ error, error_description }` with
 * its status; anything else is logged and becomes a generic 500 with no detail. On a decision endpoint the
 * refusal is recorded first.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { BrokerError, refuse } from '../core/errors';
import type { AppEnv } from './app-env';
import { recordRefusal, refusalOutcome } from './audit-trail';

/** Headers for every token-endpoint answer (RFC 6749 §5.1, RFC 8693 §2.2.1). */
export const NO_STORE = { 'Cache-Control': 'no-store', Pragma: 'no-cache' } as const;

export function errorResponse(error: BrokerError, headers: Record<string, string> = {}): Response {
  return Response.json(
    { ...error.body, error: error.code, error_description: error.description },
    { status: error.status, headers: { ...NO_STORE, ...error.headers, ...headers } },
  );
}

function asBrokerError(error: unknown): BrokerError {
  if (error instanceof BrokerError) return error;
  // Hono's own refusals (e.g. a body it cannot read) are malformed requests, not faults.
  if (error instanceof HTTPException && error.status < 500) return refuse('malformed_body', { message: error.message });
  console.error('unexpected error', error);
  return refuse('internal_error', { error: error instanceof Error ? error.name : typeof error });
}

/** Hono `onError`: records a refusal on a decision endpoint, then answers in the spec's error shape. */
export async function handleError(error: unknown, c: Context<AppEnv>): Promise<Response> {
  const refusal = asBrokerError(error);
  const draft = c.get('audit');
  if (draft !== undefined && !refusal.recorded) await recordRefusal(c.env, draft, refusalOutcome(refusal));
  return errorResponse(refusal);
}
