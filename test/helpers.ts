/**
 * Test helpers: attestations signed with the demo agent's key (or any key), DPoP proofs, calls to the worker
 * running in this isolate with its real Durable Objects and local D1, the tokens it issues, the demo agent's
 * Durable Object, a fake clock that only moves forward, step-up approvals, and the audit log.
 */
import { evictDurableObject, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import {
  base64url,
  type CryptoKey,
  calculateJwkThumbprint,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';
import { afterEach, beforeEach, expect, vi } from 'vitest';
import demoKey from '../scripts/demo/demo-agent.private.jwk.json';
import demoIntrospection from '../scripts/demo/introspection-credentials.json';
import type { AgentState } from '../worker/agents/agent-state';
import { INTAKE_SHARDS } from '../worker/audit/intake';
import type { AuditDraft } from '../worker/audit/record';
import type { AuditEvent } from '../worker/audit/schema';
import type { Admission, ExchangeCall, ExchangeDecision, ExchangeResult } from '../worker/core/exchange';
import { basicAuthorization } from '../worker/core/introspection-credential';
import { loadedPolicy } from '../worker/policy/loaded';

export const ISSUER = env.ISSUER;
export const DEMO_AGENT = 'demo-agent';
export const DEMO_KID = demoKey.kid;
export const TICKETS = 'https://tickets.example.com';
export const GRAPH = 'https://graph.example.com';
export const IAM = 'https://iam.example.com';
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
/** The description of the demo agent's task in a default request. */
export const TASK_DESCRIPTION = 'Summarise ticket T-1234 and post the summary as a comment';

/** The time in epoch seconds (the fake time while `Date` is faked). */
export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

// ---------------------------------------------------------------------------------------------------------
// Attestations, and JWTs tampered with

/** The demo agent's private key (committed, demo only) as a signing key. */
export async function demoSigningKey(): Promise<CryptoKey> {
  const { _comment, ...jwk } = demoKey;
  return (await importJWK(jwk as JWK, 'ES256')) as CryptoKey;
}

/** The claims of a valid self-signed attestation of the demo agent at `now` (epoch seconds), with `overrides`. */
export function demoClaims(overrides: JWTPayload = {}, now: number = nowSeconds()): JWTPayload {
  return {
    iss: DEMO_AGENT,
    sub: DEMO_AGENT,
    aud: ISSUER,
    iat: now,
    exp: now + 120,
    jti: crypto.randomUUID(),
    ...overrides,
  };
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
  const payload = demoClaims(options.claims, options.now);
  for (const claim of options.omit ?? []) delete payload[claim];
  const alg = options.alg ?? 'ES256';
  return new SignJWT(payload)
    .setProtectedHeader({ alg, kid: DEMO_KID, ...options.header })
    .sign(options.key ?? (await demoSigningKey()));
}

/** Replaces the character at `index` of `value` (base64url, or any string) with a different one. */
export function flipChar(value: string, index: number): string {
  const replacement = value[index] === 'A' ? 'B' : 'A';
  return `${value.slice(0, index)}${replacement}${value.slice(index + 1)}`;
}

/** The token's claims signed by a key the broker never published, under the broker's own `kid`. */
export async function forgedCopy(token: string): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256');
  const { kid } = decodeProtectedHeader(token);
  return new SignJWT(decodeJwt(token))
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', ...(kid !== undefined && { kid }) })
    .sign(privateKey);
}

// ---------------------------------------------------------------------------------------------------------
// DPoP proofs (RFC 9449 §4)

/** A client's DPoP key pair, with its public JWK and that JWK's RFC 7638 SHA-256 thumbprint (`cnf.jkt`). */
export interface DpopKey {
  alg: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
  jkt: string;
}

/** Generates a DPoP key pair for `alg` (ES256 by default). */
export async function dpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, publicKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

export interface DpopProofOptions {
  /** `htm`; `POST` by default. */
  htm?: string;
  /** `htu`; the broker's token endpoint by default. */
  htu?: string;
  /** `iat` in epoch seconds; now by default. */
  iat?: number;
  /** `jti`; a fresh UUID by default. */
  jti?: string;
  nonce?: string;
  /** `ath`, the hash of the access token the proof accompanies (RFC 9449 §4.2); none by default. */
  ath?: string;
  /** Claims to leave out, e.g. `['jti']`. */
  omit?: readonly string[];
  /** Header parameters over `{ typ: 'dpop+jwt', alg, jwk }`; one set to undefined is left out. */
  header?: Record<string, unknown>;
  /** Signs with this key (and `alg`) instead of the pair's private key. */
  signWith?: CryptoKey | Uint8Array;
  alg?: string;
}

/** A DPoP proof JWT for `POST {ISSUER}/token` signed with `key`, valid unless `options` say otherwise. */
export async function dpopProof(key: DpopKey, options: DpopProofOptions = {}): Promise<string> {
  const payload: JWTPayload = {
    jti: options.jti ?? crypto.randomUUID(),
    htm: options.htm ?? 'POST',
    htu: options.htu ?? `${ISSUER}/token`,
    iat: options.iat ?? nowSeconds(),
    ...(options.nonce !== undefined && { nonce: options.nonce }),
    ...(options.ath !== undefined && { ath: options.ath }),
  };
  for (const claim of options.omit ?? []) delete payload[claim];
  const alg = options.alg ?? key.alg;
  const header: Record<string, unknown> = { typ: 'dpop+jwt', alg, jwk: key.jwk, ...options.header };
  for (const [name, value] of Object.entries(header)) if (value === undefined) delete header[name];
  return new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(options.signWith ?? key.privateKey);
}

// ---------------------------------------------------------------------------------------------------------
// Requests to the worker, and its errors

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

/** POSTs a JSON body to `/token`. */
export function postJson(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(`${ISSUER}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
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

// ---------------------------------------------------------------------------------------------------------
// Tokens the broker issues

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

// ---------------------------------------------------------------------------------------------------------
// The agents' Durable Objects

/** The stub of an agent's Durable Object (the demo agent's by default). */
export const agentObject = (name: string = DEMO_AGENT) => env.AGENT_STATE.get(env.AGENT_STATE.idFromName(name));

/** Evicts an agent's object (woken first) and checks a new instance follows: a full rate-limit bucket, same storage. */
export async function evictAgentObject(name: string = DEMO_AGENT): Promise<void> {
  const stub = agentObject(name);
  const instances = new WeakSet<object>();
  await runInDurableObject(stub, (instance: AgentState) => {
    instances.add(instance);
  });
  await evictDurableObject(stub);
  let recreated = false;
  await runInDurableObject(stub, (instance: AgentState) => {
    recreated = !instances.has(instance);
  });
  expect(recreated).toBe(true);
}

/** A record draft for calls made to an object directly (the worker would have built it from the request). */
export function testDraft(event = 'token.exchange', agent: string = DEMO_AGENT): AuditDraft {
  return { at: Date.now(), event, agent, details: {} };
}

/**
 * A `/token` request as the agent's object receives it, for tests that call the object directly: the
 * admission, and by default a grant of a token that exists only in this call.
 */
export function admissionCall(admission: Admission, decision?: ExchangeDecision, agent = DEMO_AGENT): ExchangeCall {
  return {
    draft: testDraft('token.exchange', agent),
    admission,
    decision: decision ?? {
      kind: 'grant',
      grant: {
        tokenJti: crypto.randomUUID(),
        tokenExp: nowSeconds() + 300,
        grantedActions: 'tickets:read',
        details: {},
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// A fake clock

/** A fake `Date` that never goes back, even across tests: each test starts it 5 s past where it stood (or later). */
export interface ForwardClock {
  /** The time it shows, in epoch milliseconds. */
  readonly ms: number;
  /** Moves the clock `seconds` on. */
  advance(seconds: number): void;
  /** Sets the clock to `ms`, in epoch milliseconds. */
  set(ms: number): void;
}

/** Fakes `Date` in each test of the calling file, `leadMs` ahead of real time; call before the file's `beforeEach`. */
export function useForwardClock(leadMs = 0): ForwardClock {
  let ms = 0;
  const set = (to: number): void => {
    ms = to;
    vi.setSystemTime(ms);
  };
  beforeEach(() => {
    const from = Math.max(ms, Date.now() + leadMs) + 5_000;
    vi.useFakeTimers({ toFake: ['Date'] });
    set(from);
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  return {
    get ms() {
      return ms;
    },
    advance: (seconds) => set(ms + seconds * 1000),
    set,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Step-up approvals: `iam:disable-user` on the IAM API needs one (policies/tessera.yaml)

export const DISABLE_USER = 'iam:disable-user';
/** An approval id: a UUID, a dot, and the agent it belongs to. */
export const APPROVAL_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.demo-agent$/;

export interface StepUpTask {
  description: string;
  id?: string;
  justification?: string;
}

/** A fresh incident task that needs `iam:disable-user`, with a written justification. */
export function incidentTask(overrides: Partial<StepUpTask> = {}): StepUpTask {
  return {
    description: 'Disable the account of j.doe, taken over in incident INC-77',
    id: `inc-77-${crypto.randomUUID()}`,
    justification: 'j.doe signed in from two continents within a minute; the SOC confirmed the takeover',
    ...overrides,
  };
}

/** Asks for `iam:disable-user` on the IAM API for `task` (a fresh attestation each time). */
export function requestDisable(task: StepUpTask, extra: ExchangeFields = {}): Promise<Response> {
  return exchange({ audience: IAM, scope: DISABLE_USER, task, ...extra });
}

/** An approval opened by {@link openApproval}. */
export interface Pending {
  id: string;
  task: StepUpTask;
  /** Other fields of the request that opened it (a `requested_ttl`), sent again on every poll. */
  extra: ExchangeFields;
  /** Epoch seconds at which it was opened. */
  openedAt: number;
}

/** Opens an approval and checks the `authorization_pending` answer. */
export async function openApproval(task: StepUpTask = incidentTask(), extra: ExchangeFields = {}): Promise<Pending> {
  const openedAt = nowSeconds();
  const response = await requestDisable(task, extra);
  expect(response.status, await response.clone().text()).toBe(400);
  const body = (await response.json()) as { error: string; approval_id: string };
  expect(body.error).toBe('authorization_pending');
  expect(body.approval_id).toMatch(APPROVAL_ID);
  return { id: body.approval_id, task, extra, openedAt };
}

/** Polls: the same request again, with a fresh attestation and the approval id (and `overrides`). */
export function poll(pending: Pending, overrides: ExchangeFields = {}): Promise<Response> {
  return requestDisable(pending.task, { ...pending.extra, approval_id: pending.id, ...overrides });
}

// ---------------------------------------------------------------------------------------------------------
// The audit log

/**
 * What an agent's object answers an exchange, without the records it hands back for the worker to send (a
 * test that calls the object itself sends none: the object's own flush does, as `drainAudit` asks it).
 */
export async function admit(stub: DurableObjectStub<AgentState>, call: ExchangeCall): Promise<ExchangeResult> {
  const { records: _handedBack, ...result } = await stub.exchange(call);
  return result;
}

/** Every Durable Object that holds an audit chain: the inventory's agents, the kill switch, the intake shards. */
function chainObjects() {
  const agents = Object.keys(loadedPolicy().bundle.agents).map((id) => agentObject(id));
  const intakes = Array.from({ length: INTAKE_SHARDS }, (_, shard) =>
    env.AUDIT_INTAKE.get(env.AUDIT_INTAKE.idFromName(`intake-${shard}`)),
  );
  return { agents, intakes, killSwitch: env.KILL_SWITCH.get(env.KILL_SWITCH.idFromName('global')) };
}

/**
 * Waits until every record committed so far is in D1: each chain sends what it holds to the audit queue now,
 * instead of waiting for its timer, the chain holding the newest record last, so D1's last record is the
 * newest decision's; then D1 is polled until it holds every chain's head, and each chain forgets what D1 holds.
 * With `closeWindows`, every object also summarises the records it only counted (audit/sampler.ts).
 */
export async function drainAudit(options: { closeWindows?: boolean } = {}): Promise<void> {
  const { agents, intakes, killSwitch } = chainObjects();
  const chains: {
    backlog(): Promise<{ chain: string; waiting: number; unconfirmed: number; newestAt: number | null }>;
    heads(): Promise<{ head: { seq: number } }>;
    flush(): Promise<boolean>;
  }[] = [
    ...agents.map((stub) => ({
      backlog: () => stub.backlog(),
      heads: () => stub.heads(),
      flush: () => stub.flushAudit(options.closeWindows ?? false),
    })),
    {
      backlog: () => killSwitch.backlog(),
      heads: () => killSwitch.heads(),
      flush: () => killSwitch.flushAudit(options.closeWindows ?? false),
    },
    ...intakes.map((stub) => ({
      backlog: () => stub.backlog(),
      heads: () => stub.heads(),
      flush: () => stub.flushAudit(options.closeWindows ?? false),
    })),
  ];
  const waiting = await Promise.all(chains.map(async (chain) => ({ chain, backlog: await chain.backlog() })));
  const order = waiting
    .filter(({ backlog }) => backlog.waiting > 0 || backlog.unconfirmed > 0 || options.closeWindows)
    .sort(
      (a, b) => (a.backlog.newestAt ?? Number.POSITIVE_INFINITY) - (b.backlog.newestAt ?? Number.POSITIVE_INFINITY),
    );
  for (const { chain } of order) expect(await chain.flush()).toBe(true);
  const wanted = await Promise.all(
    order.map(async ({ chain, backlog }) => ({ name: backlog.chain, seq: (await chain.heads()).head.seq })),
  );
  // Polled by hand, not with vi.waitFor, which moves a faked Date on with every poll.
  for (let deadline = performance.now() + 10_000; ; ) {
    const { results } = await env.AUDIT_DB.prepare(
      'SELECT chain, MAX(chain_seq) AS seq FROM audit_events GROUP BY chain',
    ).all<{ chain: string; seq: number }>();
    const held = new Map(results.map((row) => [row.chain, row.seq]));
    const behind = wanted.filter(({ name, seq }) => (held.get(name) ?? 0) < seq);
    if (behind.length === 0) break;
    if (performance.now() > deadline) throw new Error(`D1 does not hold ${behind.map((c) => c.name).join(', ')}`);
    await scheduler.wait(10);
  }
  for (const { chain } of order) expect(await chain.flush()).toBe(true);
}

/**
 * Every audit record in the order D1 received them (`seq`), with columns in their D1 (snake_case) names
 * mapped to the schema's; the chains are drained first.
 */
export async function auditRecords(): Promise<AuditEvent[]> {
  await drainAudit();
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

/**
 * Whether a record is a request's: approval notifications are the agent object's alarm at work, delivered
 * whenever it fires, so they are left out of "the record a request added".
 */
export const requestRecord = (record: AuditEvent) => record.event !== 'approval.notify';

/**
 * Waits until exactly `count` audit records match, polling D1 (drained each time) for up to 10 s, and returns
 * them. For refusals of unknown callers, which go to intake shards picked at random and, on a loaded machine,
 * may land after their answer: counted, not taken as the newest.
 */
export async function matchingAudit(match: (record: AuditEvent) => boolean, count: number): Promise<AuditEvent[]> {
  let matching: AuditEvent[] = [];
  await vi.waitFor(
    async () => {
      matching = (await auditRecords()).filter(match);
      expect(matching).toHaveLength(count);
    },
    { timeout: 10_000, interval: 100 },
  );
  return matching;
}

/** The newest audit record a request made (the chains are drained oldest waiting record first). */
export async function lastAudit(): Promise<AuditEvent> {
  const records = (await auditRecords()).filter(requestRecord);
  const last = records.at(-1);
  if (last === undefined) throw new Error('no audit record');
  return last;
}

/** A record's `detail`, parsed (null when there is no record or no detail). */
export const detailOf = (record: { detail: string | null } | undefined) =>
  JSON.parse(record?.detail ?? 'null') as Record<string, unknown>;
