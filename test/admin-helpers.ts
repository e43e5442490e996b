/** Helpers for the admin endpoint tests: calls, the audit record a call adds, the 401 challenge. */
import { exports } from 'cloudflare:workers';
import { expect } from 'vitest';
import type { AuditEvent } from '../worker/audit/schema';
import { auditRecords, ISSUER, readError } from './helpers';

export const REALM_CHALLENGE = 'Bearer realm="tessera-admin"';
export const INVALID_TOKEN_CHALLENGE = `${REALM_CHALLENGE}, error="invalid_token"`;
export const INSUFFICIENT_SCOPE_CHALLENGE = `${REALM_CHALLENGE}, error="insufficient_scope"`;

/** The secret part of a demo credential. */
/** Replaces the character at `index` of `value` with a different one of the same alphabet. */
export interface AdminRequest {
  method?: 'GET' | 'PUT' | 'POST';
  body?: unknown;
  headers?: Record<string, string>;
}

/** Calls an admin endpoint of the worker in this isolate. */
export function adminFetch(path: string, { method = 'GET', body, headers = {} }: AdminRequest = {}): Promise<Response> {
  return exports.default.fetch(`${ISSUER}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

export const bearer = (credential: string) => ({ authorization: `Bearer ${credential}` });

/** Sends one request and returns the response with the one audit record it added. */
export async function sendAudited(send: () => Promise<Response>): Promise<{ response: Response; audit: AuditEvent }> {
  const before = (await auditRecords()).length;
  const response = await send();
  const after = await auditRecords();
  expect(after.length).toBe(before + 1);
  return { response, audit: after.at(-1) as AuditEvent };
}

/** Checks a 401 in the spec's shape: `invalid_token`, the realm challenge, `error="invalid_token"` in it. */
export async function expectInvalidToken(response: Response, challenge = INVALID_TOKEN_CHALLENGE): Promise<void> {
  expect(response.status, await response.clone().text()).toBe(401);
  expect((await readError(response.clone())).error).toBe('invalid_token');
  expect(response.headers.get('www-authenticate')).toBe(challenge);
  expect(response.headers.get('cache-control')).toBe('no-store');
}
