/**
 * Test helpers: attestations signed with the demo agent's key (or any key), and calls to the worker
 * running in this isolate with its real Durable Objects and local D1.
 */
import { env, exports } from 'cloudflare:workers';
import { type CryptoKey, importJWK, type JWK, type JWTPayload, SignJWT } from 'jose';
import demoKey from '../scripts/demo/demo-agent.private.jwk.json';
import type { AuditEvent } from '../worker/audit/schema';

export const ISSUER = env.ISSUER;
export const DEMO_AGENT = 'demo-agent';
export const DEMO_KID = demoKey.kid;
export const TICKETS = 'https://tickets.example.com';
export const GRAPH = 'https://graph.example.com';
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/** The demo agent's private key (committed, demo only) as a signing key. */
export async function demoSigningKey(): Promise<CryptoKey> {
  const { _comment, ...jwk } = demoKey;
  return (await importJWK(jwk as JWK, 'ES256')) as CryptoKey;
}

export interface AttestationOptions {
  claims?: JWTPayload;
  /** Claims to leave out of the defaults, e.g. `['jti']`. */
  omit?: readonly string[];
  header?: Record<string, unknown>;
  key?: CryptoKey | Uint8Array;
  alg?: string;
  /** Epoch seconds used for the default `iat` and `exp`. */
  now?: number;
}

/** Signs an attestation; by default a fresh, valid self-signed assertion of the demo agent. */
export async function attestation(options: AttestationOptions = {}): Promise<string> {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const defaults: JWTPayload = {
    iss: DEMO_AGENT,
    sub: DEMO_AGENT,
    aud: ISSUER,
    iat: now,
    exp: now + 120,
    jti: crypto.randomUUID(),
  };
  const payload: JWTPayload = { ...defaults, ...options.claims };
  for (const claim of options.omit ?? []) delete payload[claim];
  const alg = options.alg ?? 'ES256';
  return new SignJWT(payload)
    .setProtectedHeader({ alg, kid: DEMO_KID, ...options.header })
    .sign(options.key ?? (await demoSigningKey()));
}

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
    task: { description: 'Summarise ticket T-1234 and post the summary as a comment' },
    ...overrides,
  };
  for (const [name, value] of Object.entries(fields)) if (value === undefined) delete fields[name];
  return fields;
}

/** POSTs a JSON body to `/token`. */
export function postJson(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(`${ISSUER}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** POSTs a form-encoded body to `/token`; a `task` object is sent as a JSON string, as the spec says. */
export function postForm(fields: ExchangeFields): Promise<Response> {
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) {
    form.append(name, typeof value === 'string' ? value : JSON.stringify(value));
  }
  return exports.default.fetch(`${ISSUER}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
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

/** Every audit record, oldest first, with columns in their D1 (snake_case) names mapped to the schema's. */
export async function auditRecords(): Promise<AuditEvent[]> {
  const { results } = await env.AUDIT_DB.prepare('SELECT * FROM audit_events ORDER BY seq').all<
    Record<string, unknown>
  >();
  return results.map(
    (row) =>
      Object.fromEntries(
        Object.entries(row).map(([column, value]) => [
          column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
          value,
        ]),
      ) as unknown as AuditEvent,
  );
}

/** The newest audit record. */
export async function lastAudit(): Promise<AuditEvent> {
  const records = await auditRecords();
  const last = records.at(-1);
  if (last === undefined) throw new Error('no audit record');
  return last;
}
