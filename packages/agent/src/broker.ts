/**
 * The broker's HTTP contract as the agent sees it (docs/api.md): the RFC 8693 exchange at `/token` with its
 * DPoP proof and one `use_dpop_nonce` retry, and the token-authenticated `/revoke` and task completion.
 */

import { type DpopKey, dpopProof, type NonceStore } from './dpop.js';
import { AgentError, type AgentErrorCode, abortedError } from './errors.js';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/** How the agent reaches one broker. */
export interface BrokerConnection {
  /** The broker's issuer URL, without a trailing slash. */
  url: string;
  fetch: typeof fetch;
  nonces: NonceStore;
}

/** One `/token` request. */
export interface ExchangeRequest {
  attestation: string;
  audience: string;
  scope: string;
  task: { description: string; id: string; justification?: string | undefined };
  ttl?: number | undefined;
  approvalId?: string | undefined;
  dpop?: DpopKey | undefined;
  signal?: AbortSignal | undefined;
}

/** What `/token` answered, apart from refusals (which throw). */
export type ExchangeResult =
  | { kind: 'token'; accessToken: string; tokenType: 'Bearer' | 'DPoP'; expiresIn: number; scope: string }
  | { kind: 'pending'; approvalId: string; interval: number; expiresIn: number }
  | { kind: 'slow_down' };

type Body = Record<string, unknown>;

/** Sends a request; no answer at all is `broker_unavailable`, a fired signal `aborted`. */
async function send(broker: BrokerConnection, url: string, init: RequestInit, signal?: AbortSignal) {
  // Called on its own, not as `broker.fetch(...)`: the Workers runtime's fetch refuses any other `this`.
  const { fetch: fetchImpl } = broker;
  try {
    return await fetchImpl(url, { ...init, ...(signal !== undefined && { signal }) });
  } catch (cause) {
    if (signal?.aborted) throw abortedError(signal);
    throw new AgentError('broker_unavailable', `no answer from ${url}`, { cause });
  }
}

async function readBody(response: Response, url: string): Promise<Body> {
  const body: unknown = await response.json().catch(() => undefined);
  if (typeof body !== 'object' || body === null) {
    const code = response.status >= 500 ? 'broker_unavailable' : 'unexpected_response';
    throw new AgentError(code, `${url} answered ${response.status} without a JSON object`, { status: response.status });
  }
  return body as Body;
}

/** The broker's OAuth errors that end an exchange, as this client's codes. */
const REFUSALS: Readonly<Record<string, AgentErrorCode>> = {
  invalid_request: 'invalid_request',
  invalid_grant: 'invalid_grant',
  invalid_target: 'invalid_target',
  invalid_scope: 'invalid_scope',
  access_denied: 'access_denied',
  expired_token: 'approval_expired',
  temporarily_unavailable: 'broker_unavailable',
  use_dpop_nonce: 'dpop_refused',
  invalid_dpop_proof: 'dpop_refused',
};

/** A refusal as an {@link AgentError}, keeping the broker's `error` and `error_description`. */
function refusal(response: Response, body: Body, approvalId: string | undefined): AgentError {
  const error = typeof body.error === 'string' ? body.error : undefined;
  const description = typeof body.error_description === 'string' ? body.error_description : undefined;
  const details = {
    status: response.status,
    ...(error !== undefined && { error }),
    ...(description !== undefined && { description }),
    ...(approvalId !== undefined && { approvalId }),
  };
  if (error === 'slow_down') {
    const retryAfter = Number(response.headers.get('retry-after'));
    return new AgentError('rate_limited', 'the broker rate-limits this agent', {
      ...details,
      ...(Number.isFinite(retryAfter) && retryAfter > 0 && { retryAfter }),
    });
  }
  if (error === 'access_denied' && approvalId !== undefined)
    return new AgentError('approval_denied', 'the step-up approval was denied', details);
  const code = (error !== undefined && Object.hasOwn(REFUSALS, error) && REFUSALS[error]) || undefined;
  if (code !== undefined) return new AgentError(code, `the broker refused: ${error}`, details);
  const fallback = response.status >= 500 ? 'broker_unavailable' : 'unexpected_response';
  return new AgentError(fallback, `the broker answered ${response.status}`, details);
}

function positive(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
}

function parseExchange(response: Response, body: Body, approvalId: string | undefined): ExchangeResult {
  if (response.ok) {
    const { access_token, token_type, expires_in, scope } = body;
    const tokenType = typeof token_type === 'string' ? token_type.toLowerCase() : '';
    const expiresIn = positive(expires_in);
    if (typeof access_token !== 'string' || (tokenType !== 'bearer' && tokenType !== 'dpop') || !expiresIn)
      throw new AgentError('unexpected_response', 'the broker answered 200 without a token');
    return {
      kind: 'token',
      accessToken: access_token,
      tokenType: tokenType === 'dpop' ? 'DPoP' : 'Bearer',
      expiresIn,
      scope: typeof scope === 'string' ? scope : '',
    };
  }
  if (body.error === 'authorization_pending') {
    const id = body.approval_id ?? approvalId;
    if (typeof id !== 'string') throw new AgentError('unexpected_response', 'authorization_pending without an id');
    return {
      kind: 'pending',
      approvalId: id,
      interval: positive(body.interval) ?? 5,
      expiresIn: positive(body.expires_in) ?? 0,
    };
  }
  // An approval polled too fast is slow_down with 400 (OpenID CIBA §11); the rate limit's is 429.
  if (body.error === 'slow_down' && response.status === 400 && approvalId !== undefined) return { kind: 'slow_down' };
  throw refusal(response, body, approvalId);
}

/**
 * One RFC 8693 exchange. With a DPoP key, the proof carries the broker's latest nonce; a `use_dpop_nonce`
 * answer is retried once with the nonce it sent (RFC 9449 §8).
 */
export async function exchange(broker: BrokerConnection, request: ExchangeRequest): Promise<ExchangeResult> {
  const url = `${broker.url}/token`;
  const { attestation, audience, scope, task, ttl, approvalId } = request;
  const body = JSON.stringify({
    grant_type: TOKEN_EXCHANGE,
    subject_token_type: JWT_TOKEN_TYPE,
    subject_token: attestation,
    audience,
    scope,
    task,
    ...(ttl !== undefined && { requested_ttl: ttl }),
    ...(approvalId !== undefined && { approval_id: approvalId }),
  });
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (request.dpop !== undefined)
      headers.dpop = await dpopProof(request.dpop, { method: 'POST', url, nonce: broker.nonces.get(url) });
    const response = await send(broker, url, { method: 'POST', headers, body }, request.signal);
    const fresh = broker.nonces.remember(url, response);
    const answer = await readBody(response, url);
    if (answer.error === 'use_dpop_nonce' && fresh !== undefined && attempt === 0) continue;
    return parseExchange(response, answer, request.approvalId);
  }
}

/** A token the agent holds, as presented to the broker's token-authenticated routes. */
export interface HeldToken {
  accessToken: string;
  tokenType: 'Bearer' | 'DPoP';
}

async function postWithToken(
  broker: BrokerConnection,
  path: string,
  held: HeldToken,
  dpop: DpopKey | undefined,
  init: { headers: Record<string, string>; body?: string },
): Promise<void> {
  const url = `${broker.url}${path}`;
  const headers: Record<string, string> = { accept: 'application/json', ...init.headers };
  if (held.tokenType === 'DPoP') {
    if (dpop === undefined) throw new TypeError('a DPoP-bound token without its key');
    headers.dpop = await dpopProof(dpop, { method: 'POST', url, accessToken: held.accessToken });
  }
  const response = await send(broker, url, {
    method: 'POST',
    headers,
    ...(init.body !== undefined && { body: init.body }),
  });
  if (response.ok) return;
  const body = await readBody(response, url);
  throw refusal(response, body, undefined);
}

/** Revokes one token (RFC 7009), with a proof when it is DPoP-bound. */
export function revokeToken(broker: BrokerConnection, held: HeldToken, dpop: DpopKey | undefined): Promise<void> {
  return postWithToken(broker, '/revoke', held, dpop, {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: held.accessToken }).toString(),
  });
}

/** Completes a task with one of its tokens: the broker revokes every token of the task. */
export function completeTask(
  broker: BrokerConnection,
  taskId: string,
  held: HeldToken,
  dpop: DpopKey | undefined,
): Promise<void> {
  return postWithToken(broker, `/tasks/${encodeURIComponent(taskId)}/complete`, held, dpop, {
    headers: { authorization: `${held.tokenType} ${held.accessToken}` },
  });
}
