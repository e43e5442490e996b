/**
 * Helpers for the admin endpoint tests: calls, the audit record a call adds, the 401 challenge, approvals as
 * approvers read them, and identities signed in through Cloudflare Access.
 */
import { exports } from 'cloudflare:workers';
import {
  type CryptoKey,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
  SignJWT,
} from 'jose';
import { expect, type MockInstance, vi } from 'vitest';
import creds from '../scripts/demo/admin-credentials.json';
import type { AuditEvent } from '../worker/audit/schema';
import { auditRecords, ISSUER, nowSeconds, readError, requestRecord } from './helpers';

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

/** Sends one request and returns the response with the one audit record it added (notifications aside). */
export async function sendAudited(send: () => Promise<Response>): Promise<{ response: Response; audit: AuditEvent }> {
  const before = (await auditRecords()).filter(requestRecord).length;
  const response = await send();
  const after = (await auditRecords()).filter(requestRecord);
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

// ---------------------------------------------------------------------------------------------------------
// Approvals, as approvers read them

/** An approval as `/admin/approvals/{id}` answers it. */
export interface ApprovalJson {
  id: string;
  status: string;
  decisions: { by: string; decision: string; reason: string; at: string }[];
  [field: string]: unknown;
}

/** Reads an approval as `credential` (the demo approver by default) and checks the 200. */
export async function readApproval(id: string, credential = creds.approver): Promise<ApprovalJson> {
  const response = await adminFetch(`/admin/approvals/${id}`, { headers: bearer(credential) });
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as ApprovalJson;
}

// ---------------------------------------------------------------------------------------------------------
// Cloudflare Access: the team, application audience and role rules of policies/admins.yaml

export const ACCESS_TEAM_DOMAIN = 'https://acme.cloudflareaccess.com';
export const ACCESS_AUD = '4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2';
export const ACCESS_CERTS_URL = `${ACCESS_TEAM_DOMAIN}/cdn-cgi/access/certs`;

/** A stand-in for the Access team's signing key, made by {@link newAccessTeam}. */
export interface AccessTeam {
  kid: string;
  privateKey: CryptoKey;
  /** The public key as the team's certs publish it. */
  publicJwk: JWK;
}

/** A new team signing key under `kid`; make one per file (`beforeAll`): the broker caches the certs per isolate. */
export async function newAccessTeam(kid: string): Promise<AccessTeam> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

export interface AccessJwtOptions {
  claims?: JWTPayload;
  omit?: readonly string[];
  header?: Partial<JWTHeaderParameters>;
  key?: CryptoKey | Uint8Array;
  now?: number;
}

/** Signs an Access JWT with the team's key; by default a fresh, valid one for `email`. */
export function signAccessJwt(team: AccessTeam, email: string, options: AccessJwtOptions = {}): Promise<string> {
  const now = options.now ?? nowSeconds();
  const payload: JWTPayload = {
    iss: ACCESS_TEAM_DOMAIN,
    aud: [ACCESS_AUD],
    email,
    sub: crypto.randomUUID(),
    type: 'app',
    identity_nonce: 'nonce',
    iat: now,
    nbf: now,
    exp: now + 600,
    ...options.claims,
  };
  for (const claim of options.omit ?? []) delete payload[claim];
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'RS256', kid: team.kid, ...options.header })
    .sign(options.key ?? team.privateKey);
}

/** The header that carries an Access JWT to the worker. */
export const viaAccess = (jwt: string) => ({ 'cf-access-jwt-assertion': jwt });

/** Mocks outbound `fetch`: the team's certs URL serves the team's key; any other URL is a test bug. */
export function mockAccessCerts(team: AccessTeam): MockInstance<typeof fetch> {
  return vi.spyOn(globalThis, 'fetch').mockImplementation(async (input) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url !== ACCESS_CERTS_URL) throw new Error(`unexpected outbound fetch: ${url}`);
    return Response.json({ keys: [team.publicJwk] });
  });
}
