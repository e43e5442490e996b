/** Tokens the broker issues to the demo agent, and their introspection as a demo API. */
import { base64url, decodeJwt } from 'jose';
import { expect } from 'vitest';
import demoIntrospection from '../../scripts/demo/introspection-credentials.json';
import { basicAuthorization } from '../../worker/core/introspection-credential';
import { TICKETS } from './demo';
import { exchange, postForm, TASK_DESCRIPTION } from './requests';

/** A token issued by {@link issue}, with the claims the tests look at. */
export interface Issued {
  token: string;
  jti: string;
  iat: number;
  exp: number;
  taskId: string;
}

/** Issues a token to the demo agent for `taskId` (a fresh task when none is given), asking for `ttl` if given. */
export async function issue(taskId: string = crypto.randomUUID(), ttl?: number): Promise<Issued> {
  const response = await exchange({
    task: { description: TASK_DESCRIPTION, id: taskId },
    ...(ttl !== undefined && { requested_ttl: ttl }),
  });
  expect(response.status, await response.clone().text()).toBe(200);
  const token = ((await response.json()) as { access_token: string }).access_token;
  const claims = decodeJwt(token);
  return {
    token,
    jti: String(claims.jti),
    iat: Number(claims.iat),
    exp: Number(claims.exp),
    taskId: (claims.task as { id: string }).id,
  };
}

/** The committed introspection credential of a demo API (`scripts/demo/introspection-credentials.json`). */
export function demoIntrospectionCredential(audience: string): string {
  const credential: unknown = Object.hasOwn(demoIntrospection, audience)
    ? (demoIntrospection as Record<string, unknown>)[audience]
    : undefined;
  if (typeof credential !== 'string' || !credential.startsWith('tessera_introspection.'))
    throw new Error(`no demo API ${audience}`);
  return credential;
}

/**
 * `Authorization: Basic` for an API at `/introspect`: the audience as client id and its credential as
 * password, each form-encoded (RFC 6749 §2.3.1); the demo API's credential unless `credential` is given.
 */
export function introspectionAuthorization(audience: string, credential = demoIntrospectionCredential(audience)) {
  return { authorization: basicAuthorization(audience, credential) };
}

/** The `aud` of `token` when it is a demo API (one with a committed credential), else the tickets API. */
function demoAudienceOf(token: string): string {
  try {
    const { aud } = decodeJwt(token);
    return typeof aud === 'string' && aud.startsWith('https://') && Object.hasOwn(demoIntrospection, aud)
      ? aud
      : TICKETS;
  } catch {
    return TICKETS;
  }
}

/**
 * Introspects `token` in the RFC 7662 form encoding as the demo API `audience` (the token's own by default,
 * the tickets API for what is no demo API's token), checks the answer is a 200 not to cache, and returns it.
 */
export async function introspect(token: string, audience = demoAudienceOf(token)): Promise<Record<string, unknown>> {
  const response = await postForm({ token }, '/introspect', introspectionAuthorization(audience));
  expect(response.status).toBe(200);
  expect(response.headers.get('cache-control')).toBe('no-store');
  return (await response.json()) as Record<string, unknown>;
}

/** The SHA-256 of `text`, base64url-encoded: the `hash` of a task with that description. */
export async function sha256Base64url(text: string): Promise<string> {
  return base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))));
}
