/** Calls to the admin endpoints as a role's bearer credential, and the 401 challenge they answer without one. */
import { exports } from 'cloudflare:workers';
import { expect } from 'vitest';
import { ISSUER } from './demo';
import { readError } from './requests';

export const REALM_CHALLENGE = 'Bearer realm="tessera-admin"';
export const INVALID_TOKEN_CHALLENGE = `${REALM_CHALLENGE}, error="invalid_token"`;
export const INSUFFICIENT_SCOPE_CHALLENGE = `${REALM_CHALLENGE}, error="insufficient_scope"`;

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

/** The `authorization` header for a bearer `credential`. */
export const bearer = (credential: string) => ({ authorization: `Bearer ${credential}` });

/** Checks a 401 in the spec's shape: `invalid_token`, the realm challenge, `error="invalid_token"` in it. */
export async function expectInvalidToken(response: Response, challenge = INVALID_TOKEN_CHALLENGE): Promise<void> {
  expect(response.status, await response.clone().text()).toBe(401);
  expect((await readError(response.clone())).error).toBe('invalid_token');
  expect(response.headers.get('www-authenticate')).toBe(challenge);
  expect(response.headers.get('cache-control')).toBe('no-store');
}
