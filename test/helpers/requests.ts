/** Requests to the worker running in this isolate (`/token` above all), and its error answers. */
import { exports } from 'cloudflare:workers';
import { expect } from 'vitest';
import { attestation } from './attestation';
import { ISSUER, TICKETS } from './demo';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
/** The description of the demo agent's task in a default request. */
export const TASK_DESCRIPTION = 'Summarise ticket T-1234 and post the summary as a comment';

export interface ExchangeFields {
  grant_type?: string;
  subject_token?: string;
  subject_token_type?: string;
  audience?: string;
  resource?: string;
  scope?: string;
  task?: unknown;
  requested_ttl?: number | string;
  [field: string]: unknown;
}

/** A valid request body for the demo agent, with `overrides` applied (a field set to undefined is dropped). */
export async function exchangeFields(overrides: ExchangeFields = {}): Promise<ExchangeFields> {
  const fields: ExchangeFields = {
    grant_type: TOKEN_EXCHANGE,
    subject_token: await attestation(),
    subject_token_type: JWT_TOKEN_TYPE,
    audience: TICKETS,
    scope: 'tickets:read tickets:comment',
    task: { description: TASK_DESCRIPTION },
    ...overrides,
  };
  for (const [name, value] of Object.entries(fields)) if (value === undefined) delete fields[name];
  return fields;
}

/** POSTs a JSON body (a string as it is) to `path` of the worker. */
export function postJsonTo(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(`${ISSUER}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** POSTs a JSON body to `/token`. */
export function postJson(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return postJsonTo('/token', body, headers);
}

/**
 * POSTs form-encoded `fields` to `path` (`/token` by default), with `headers`; a `task` object goes as a JSON
 * string, per the spec.
 */
export function postForm(
  fields: ExchangeFields,
  path = '/token',
  headers: Record<string, string> = {},
): Promise<Response> {
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) {
    form.append(name, typeof value === 'string' ? value : JSON.stringify(value));
  }
  return exports.default.fetch(`${ISSUER}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: form.toString(),
  });
}

/** Exchanges a valid request for the demo agent with `overrides`, as JSON. */
export async function exchange(overrides: ExchangeFields = {}): Promise<Response> {
  return postJson(await exchangeFields(overrides));
}

export interface TokenError {
  error: string;
  error_description: string;
}

/** Reads an error response and checks its shape. */
export async function readError(response: Response): Promise<TokenError> {
  const body = (await response.json()) as TokenError;
  if (typeof body.error !== 'string' || typeof body.error_description !== 'string') {
    throw new Error(`not an OAuth error body: ${JSON.stringify(body)}`);
  }
  return body;
}

/** Checks an error answer: `status`, not cached, the OAuth error `code` and no token; returns its body. */
export async function expectError(response: Response, status: number, code: string): Promise<Record<string, unknown>> {
  expect(response.status, await response.clone().text()).toBe(status);
  expect(response.headers.get('cache-control')).toBe('no-store');
  const body = await readError(response);
  expect(body.error).toBe(code);
  expect(body).not.toHaveProperty('access_token');
  return body as unknown as Record<string, unknown>;
}
