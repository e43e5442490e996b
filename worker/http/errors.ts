/**
 * The one place errors become responses: a {@link BrokerError} becomes `{ error, error_description }` with
 * its status; a Hono refusal below 500 is a malformed request; anything else is logged and becomes a generic
 * 500 with no detail (`worker/audit/refusals.ts`, as on `/token`). On a decision endpoint the refusal is
 * recorded first.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { asRefusal, refusalOutcome } from '../audit/refusals';
import { type BrokerError, refuse } from '../core/errors';
import type { AppEnv } from './app-env';
import { recordRefusal } from './audit-trail';

/** Headers for every token-endpoint answer (RFC 6749 §5.1, RFC 8693 §2.2.1). */
export const NO_STORE = { 'Cache-Control': 'no-store', Pragma: 'no-cache' } as const;

/** A refusal as an OAuth error response (RFC 6749 §5.2): its status, code, public text and headers. */
export function errorResponse(error: BrokerError, headers: Record<string, string> = {}): Response {
  return Response.json(
    { ...error.body, error: error.code, error_description: error.description },
    { status: error.status, headers: { ...NO_STORE, ...error.headers, ...headers } },
  );
}

function asBrokerError(error: unknown, path: string): BrokerError {
  // Hono's own refusals (e.g. a body it cannot read) are malformed requests, not faults.
  if (error instanceof HTTPException && error.status < 500) return refuse('malformed_body', { message: error.message });
  return asRefusal(error, path);
}

/** Hono `onError`: records a refusal on a decision endpoint, then answers in the spec's error shape. */
export async function handleError(error: unknown, c: Context<AppEnv>): Promise<Response> {
  const refusal = asBrokerError(error, c.req.path);
  const draft = c.get('audit');
  if (draft !== undefined && !refusal.recorded) await recordRefusal(c.env, draft, refusalOutcome(refusal));
  return errorResponse(refusal);
}
