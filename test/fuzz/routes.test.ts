/**
 * Fuzzing every route of the worker but `/token`'s exchange (`token.test.ts`): methods, paths and their
 * parameters, queries, bodies in both encodings and beyond them, `Authorization` schemes and junk, Access
 * assertions, content types and `cf-connecting-ip`, against the real worker, Durable Objects and D1.
 *
 * Properties, for every request: no 5xx; every error in the spec's shape; a method a route does not take is
 * `405` with `Allow`; an admin route answers `401` without a valid credential, `403` for a role it does not
 * allow, and otherwise what its parameters and body call for (the model below, from `docs/api.md`); public
 * reads answer 200. For every run: one audit record per decision, and the sampled refusals of unknown callers
 * (a run may send one of them a hundred times over) add up with the intake's summaries.
 */
import fc from 'fast-check';
import { base64url } from 'jose';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { loadedPolicy } from '../../worker/policy/loaded';
import {
  authorizationJunk,
  connectingIp,
  contentType,
  edgeString,
  headerValue,
  junk,
  method,
  PROTOTYPE_NAMES,
  pathSegment,
  wrongType,
} from './arbitraries';
import { type AuditExpectation, AuditLedger, checkAnswer, type FuzzRequest } from './oracles';
import { fuzzParameters, fuzzRuns, fuzzTimeout, longRun } from './params';

const { bundle } = loadedPolicy();
const CI_RUNS = 50;
/** About how long one run takes on a loaded machine: the property's time budget and timeout. */
const MS_PER_CASE = 1000;

type Role = 'admin' | 'approver' | 'auditor';
const ALL_ROLES: readonly Role[] = ['admin', 'approver', 'auditor'];

/** A value generated with whether the contract accepts it. */
interface Judged<T> {
  value: T;
  valid: boolean;
}

const ok = <T>(arbitrary: fc.Arbitrary<T>) => arbitrary.map((value): Judged<T> => ({ value, valid: true }));
const bad = <T>(arbitrary: fc.Arbitrary<T>) => arbitrary.map((value): Judged<T> => ({ value, valid: false }));

/** A path parameter that routes as one segment: no dot segment, not empty. */
const segment = pathSegment.filter((value) => !['', '.', '..', '%2e%2e'].includes(value.toLowerCase()));

/** An inventory agent id (`Object.hasOwn`), or anything else. */
const agentId = fc.oneof(fc.constantFrom(...Object.keys(bundle.agents)), segment, fc.constantFrom(...PROTOTYPE_NAMES));
const isAgent = (id: string) => Object.hasOwn(bundle.agents, decodeSegment(id));

function decodeSegment(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** `{ reason }`: 1-1000 characters once trimmed. */
const reasonBody: fc.Arbitrary<Judged<unknown>> = fc.oneof(
  ok(fc.record({ reason: fc.constantFrom('INC-77: takeover', 'x', ' spaces around ', 'r'.repeat(1000)) })),
  bad(fc.constantFrom({}, { reason: '' }, { reason: '   ' }, { reason: 'r'.repeat(1001) }, { why: 'x' })),
  bad(wrongType.map((reason) => ({ reason }))),
  bad(wrongType),
);

/** `{ engaged, reason }` of the kill switch, never a valid one: a change waits out the lease (seconds). */
const killSwitchBody: fc.Arbitrary<Judged<unknown>> = bad(
  fc.oneof(
    fc.record({
      engaged: fc
        .oneof(junk, fc.constantFrom('yes', 1, 'TRUE'))
        .filter((engaged) => !['true', 'false', true, false].includes(engaged as string)),
      reason: fc.constant('INC-77'),
    }),
    fc.record({ engaged: fc.boolean(), reason: fc.oneof(fc.constantFrom('', '  '), wrongType) }),
    wrongType,
  ),
);

const isoTime = fc
  .integer({ min: -86_400_000, max: 86_400_000 })
  .map((offset) => new Date(Date.now() + offset).toISOString());

/** A query: each parameter a route takes, valid or not, and now and then one it does not. */
function query(params: Record<string, fc.Arbitrary<Judged<string>>>): fc.Arbitrary<Judged<Record<string, string>>> {
  const entries = Object.entries(params).map(([name, value]) =>
    fc.option(
      value.map((judged) => ({ name, ...judged })),
      { freq: 2 },
    ),
  );
  return fc
    .tuple(
      fc.tuple(...entries),
      fc.option(
        fc
          .oneof(fc.constantFrom('unknown', '__proto__', 'constructor', 'LIMIT'), edgeString)
          .filter((name) => !Object.hasOwn(params, name))
          .map((name) => ({ name, value: 'x', valid: false })),
        { freq: 8 },
      ),
    )
    .map(([chosen, extra]) => {
      const present = [...chosen, extra].filter((entry) => entry !== null);
      return {
        value: Object.fromEntries(present.map(({ name, value }) => [name, value])),
        valid: present.every((entry) => entry.valid),
      };
    });
}

const limit = (max: number) =>
  fc.oneof(
    ok(fc.integer({ min: 1, max }).map(String)),
    bad(fc.constantFrom('0', String(max + 1), '1000', '-1', '1.5', ' 5', '05x', '', 'abc')),
  );

const auditQuery = query({
  agent: fc.oneof(
    ok(fc.constantFrom('demo-agent', 'a'.repeat(128), ...PROTOTYPE_NAMES)),
    bad(fc.constant('a'.repeat(129))),
  ),
  task: fc.oneof(ok(fc.constantFrom('T-1', 't'.repeat(128))), bad(fc.constantFrom('', 't'.repeat(129)))),
  decision: fc.oneof(ok(fc.constantFrom('granted', 'refused')), bad(fc.constantFrom('GRANTED', 'maybe', ''))),
  event: fc.oneof(ok(fc.constantFrom('token.exchange', 'admin.audit.read')), bad(fc.constant('e'.repeat(65)))),
  since: fc.oneof(
    ok(isoTime),
    ok(fc.constant('2026-12-01T10:30:00+01:00')),
    bad(fc.constantFrom('yesterday', '2026-12-01', '1796160000')),
  ),
  until: fc.oneof(ok(isoTime), bad(fc.constantFrom('2026-13-01T00:00:00Z', 'now'))),
  cursor: fc.oneof(
    ok(fc.integer({ min: 1, max: 1e12 }).map(String)),
    bad(fc.constantFrom('0', '-1', 'x', '1'.repeat(16))),
  ),
  limit: limit(500),
});

const agentsQuery = query({
  cursor: fc.oneof(ok(fc.constantFrom('demo-agent', 'a', 'z'.repeat(64))), bad(fc.constantFrom('', 'z'.repeat(65)))),
  limit: limit(500),
});

const approvalsQuery = query({
  status: fc.oneof(
    ok(fc.constantFrom('pending', 'approved', 'denied', 'expired', 'collected')),
    bad(fc.constantFrom('PENDING', 'open', '')),
  ),
  agent: fc.oneof(
    ok(fc.constantFrom('demo-agent', 'a'.repeat(128), ...PROTOTYPE_NAMES)),
    bad(fc.constantFrom('', 'a'.repeat(129))),
  ),
  // A cursor is opaque: base64url of `approvals:<seq>`; an audit listing's cursor is not one.
  cursor: fc.oneof(
    ok(fc.integer({ min: 1, max: 1e12 }).map((seq) => base64url.encode(`approvals:${seq}`))),
    bad(fc.constantFrom('', 'x', '12', 'YXBwcm92YWxzOjA', 'A'.repeat(65))),
  ),
  limit: limit(200),
});

const usageQuery = query({
  days: limit(366),
  agent: fc.oneof(
    ok(fc.constantFrom('demo-agent', 'a'.repeat(128), ...PROTOTYPE_NAMES)),
    bad(fc.constantFrom('', 'a'.repeat(129))),
  ),
});

const reviewQuery = query({ days: limit(366) });

/** What an admin route needs and what it answers a caller holding the role, given its parameters. */
interface AdminCall {
  path: string;
  method: 'GET' | 'POST' | 'PUT';
  roles: readonly Role[];
  /** The status a caller with the role gets, when the body is the call's own in JSON (or a form of strings). */
  status: number;
  /** The status when the body is anything else: a 404 decided before the body is read, else null (anything). */
  statusOtherwise?: number | null;
  body?: unknown;
  /** A read the console polls: granted, it is sampled per admin (worker/audit/sampler.ts), not recorded each time. */
  polled?: boolean;
}

const adminCall: fc.Arbitrary<AdminCall> = fc.oneof(
  fc.constant<AdminCall>({
    path: '/admin/kill-switch',
    method: 'GET',
    roles: ['admin', 'auditor'],
    status: 200,
    polled: true,
  }),
  killSwitchBody.map(
    (body): AdminCall => ({
      path: '/admin/kill-switch',
      method: 'PUT',
      roles: ['admin'],
      status: 400,
      body: body.value,
    }),
  ),
  agentsQuery.map(
    (q): AdminCall => ({
      path: `/admin/agents?${new URLSearchParams(q.value)}`,
      method: 'GET',
      roles: ['admin', 'auditor'],
      status: q.valid ? 200 : 400,
    }),
  ),
  agentId.map(
    (id): AdminCall => ({
      path: `/admin/agents/${id}`,
      method: 'GET',
      roles: ['admin', 'auditor'],
      status: isAgent(id) ? 200 : 404,
    }),
  ),
  fc.tuple(agentId, fc.constantFrom('revoke', 'suspend', 'resume'), reasonBody).map(
    ([id, action, body]): AdminCall => ({
      path: `/admin/agents/${id}/${action}`,
      method: 'POST',
      roles: ['admin'],
      status: isAgent(id) ? (body.valid ? 200 : 400) : 404,
      statusOtherwise: isAgent(id) ? null : 404,
      body: body.value,
    }),
  ),
  fc.tuple(fc.constantFrom('tokens', 'tasks'), segment, reasonBody).map(
    ([kind, id, body]): AdminCall => ({
      path: `/admin/${kind}/${id}/revoke`,
      method: 'POST',
      roles: ['admin'],
      // Nothing was issued in this file: every token and task is unknown.
      status: body.valid ? 404 : 400,
      body: body.value,
    }),
  ),
  auditQuery.map(
    (q): AdminCall => ({
      path: `/admin/audit?${new URLSearchParams(q.value)}`,
      method: 'GET',
      roles: ['admin', 'auditor'],
      status: q.valid ? 200 : 400,
    }),
  ),
  fc.constant<AdminCall>({ path: '/admin/audit/backlog', method: 'GET', roles: ['admin', 'auditor'], status: 200 }),
  approvalsQuery.map(
    (q): AdminCall => ({
      path: `/admin/approvals?${new URLSearchParams(q.value)}`,
      method: 'GET',
      roles: ['approver', 'admin', 'auditor'],
      status: q.valid ? 200 : 400,
      polled: q.valid,
    }),
  ),
  fc
    .tuple(
      fc.oneof(
        segment,
        fc.uuid().map((id) => `${id}.demo-agent`),
        fc.uuid().map((id) => `${id}.constructor`),
      ),
      fc.boolean(),
    )
    .map(
      ([id, decide]): AdminCall => ({
        path: `/admin/approvals/${id}`,
        method: decide ? 'POST' : 'GET',
        roles: decide ? ['approver'] : ['approver', 'admin', 'auditor'],
        // No approval was opened in this file.
        status: 404,
        statusOtherwise: 404,
        body: decide ? { decision: 'approve', reason: 'looks right' } : undefined,
      }),
    ),
  fc.constant<AdminCall>({ path: '/admin/whoami', method: 'GET', roles: ALL_ROLES, status: 200, polled: true }),
  usageQuery.map(
    (q): AdminCall => ({
      path: `/admin/usage?${new URLSearchParams(q.value)}`,
      method: 'GET',
      roles: ['admin', 'auditor'],
      status: q.valid ? 200 : 400,
      polled: q.valid,
    }),
  ),
  reviewQuery.map(
    (q): AdminCall => ({
      path: `/admin/review?${new URLSearchParams(q.value)}`,
      method: 'GET',
      roles: ['admin', 'auditor'],
      status: q.valid ? 200 : 400,
    }),
  ),
);

/** Who calls: a demo credential of a role, nobody, or junk (a bad credential, an Access assertion). */
type Caller = { kind: 'role'; role: Role } | { kind: 'none' } | { kind: 'junk'; header: Record<string, string> };

const caller: fc.Arbitrary<Caller> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...ALL_ROLES).map((role): Caller => ({ kind: 'role', role })) },
  { weight: 1, arbitrary: fc.constant<Caller>({ kind: 'none' }) },
  {
    weight: 1,
    arbitrary: fc.oneof(
      authorizationJunk.map((authorization): Caller => ({ kind: 'junk', header: { authorization } })),
      headerValue.map((assertion): Caller => ({ kind: 'junk', header: { 'cf-access-jwt-assertion': assertion } })),
    ),
  },
);

/** A public route and what it answers (null: anything in the spec's shape, audited as an unknown caller's). */
interface PublicCall {
  path: string;
  method: string;
  status: number | null;
  audit: AuditExpectation;
}

const publicCall: fc.Arbitrary<PublicCall> = fc.oneof(
  fc.constantFrom('/.well-known/oauth-authorization-server', '/.well-known/jwks.json', '/healthz').chain((path) =>
    fc
      .oneof(
        fc.constant(''),
        fc.string({ maxLength: 10 }).map((q) => `?${encodeURIComponent(q.toWellFormed())}=1`),
      )
      .map((q): PublicCall => ({ path: `${path}${q}`, method: 'GET', status: 200, audit: 'none' })),
  ),
  fc.constant<PublicCall>({ path: '/console/', method: 'GET', status: 200, audit: 'none' }),
  segment.map((name): PublicCall => ({ path: `/console/${name}.js`, method: 'GET', status: null, audit: 'none' })),
  fc
    .constantFrom('/token', '/revoke')
    .map((path): PublicCall => ({ path, method: 'POST', status: null, audit: 'sampled' })),
  // An API authenticates to /introspect (RFC 7662 §2.1): these calls carry no credential, so 401 before the
  // body, recorded as an unknown caller's refusal.
  fc.constant<PublicCall>({ path: '/introspect', method: 'POST', status: 401, audit: 'sampled' }),
  segment.map((id): PublicCall => ({ path: `/tasks/${id}/complete`, method: 'POST', status: null, audit: 'sampled' })),
);

/** Every route and the methods it takes: any other method is 405 with `Allow` (GET routes take HEAD too). */
const ROUTE_METHODS: readonly { path: fc.Arbitrary<string>; methods: readonly string[] }[] = [
  { path: fc.constant('/.well-known/oauth-authorization-server'), methods: ['GET'] },
  { path: fc.constant('/.well-known/jwks.json'), methods: ['GET'] },
  { path: fc.constant('/healthz'), methods: ['GET'] },
  { path: fc.constant('/token'), methods: ['POST'] },
  { path: fc.constant('/revoke'), methods: ['POST'] },
  { path: fc.constant('/introspect'), methods: ['POST'] },
  { path: segment.map((id) => `/tasks/${id}/complete`), methods: ['POST'] },
  { path: fc.constant('/admin/kill-switch'), methods: ['GET', 'PUT'] },
  { path: fc.constant('/admin/agents'), methods: ['GET'] },
  { path: agentId.map((id) => `/admin/agents/${id}`), methods: ['GET'] },
  {
    path: fc
      .tuple(agentId, fc.constantFrom('revoke', 'suspend', 'resume'))
      .map(([id, a]) => `/admin/agents/${id}/${a}`),
    methods: ['POST'],
  },
  { path: segment.map((id) => `/admin/tokens/${id}/revoke`), methods: ['POST'] },
  { path: segment.map((id) => `/admin/tasks/${id}/revoke`), methods: ['POST'] },
  { path: fc.constantFrom('/admin/audit', '/admin/audit/verify', '/admin/audit/backlog'), methods: ['GET'] },
  { path: fc.constant('/admin/approvals'), methods: ['GET'] },
  { path: segment.map((id) => `/admin/approvals/${id}`), methods: ['GET', 'POST'] },
  { path: fc.constant('/admin/whoami'), methods: ['GET'] },
  { path: fc.constantFrom('/admin/usage', '/admin/review'), methods: ['GET'] },
];

const wrongMethod = fc.constantFrom(...ROUTE_METHODS).chain(({ path, methods }) =>
  fc.record({
    path,
    method: method.filter((m) => !methods.includes(m) && !(m === 'HEAD' && methods.includes('GET'))),
  }),
);

/** A path no route has. */
const unknownPath = fc.oneof(
  fc
    .tuple(fc.constantFrom('/admin', '/tasks', '/.well-known', ''), segment)
    .map(([prefix, name]) => `${prefix}/${name}x/y/z`),
  fc.constantFrom('/', '/admin', '/tasks', '/token/x', '/admin/agents/a/b/c', '/%00', '/\u00e9'),
);

/** The body and headers a request carries, mostly valid for its route, sometimes anything. */
const payload = fc.record({
  encoding: fc.constantFrom('json', 'form', 'raw'),
  raw: fc.oneof(fc.string({ maxLength: 50 }), fc.constantFrom('{', '[]', 'null', '{"a":1,"a":2}', 'x'.repeat(17_000))),
  contentTypeJson: contentType('application/json'),
  contentTypeForm: contentType('application/x-www-form-urlencoded'),
  ip: connectingIp,
  junkFields: fc.dictionary(fc.oneof(edgeString, fc.constantFrom('token', 'reason', 'engaged')), junk, { maxKeys: 3 }),
});

type Payload = typeof payload extends fc.Arbitrary<infer P> ? P : never;

type Case =
  | { kind: 'admin'; call: AdminCall; caller: Caller; payload: Payload }
  | { kind: 'public'; call: PublicCall; payload: Payload }
  | { kind: 'wrong_method'; path: string; method: string }
  | { kind: 'unknown_path'; path: string; method: string };

const routeCase: fc.Arbitrary<Case> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ call: adminCall, caller, payload }).map((c): Case => ({ kind: 'admin', ...c })) },
  { weight: 3, arbitrary: fc.record({ call: publicCall, payload }).map((c): Case => ({ kind: 'public', ...c })) },
  { weight: 2, arbitrary: wrongMethod.map((c): Case => ({ kind: 'wrong_method', ...c })) },
  { weight: 1, arbitrary: fc.record({ path: unknownPath, method }).map((c): Case => ({ kind: 'unknown_path', ...c })) },
);

function credentialHeaders(who: Caller): Record<string, string> {
  if (who.kind === 'none') return {};
  if (who.kind === 'junk') return who.header;
  return { authorization: `Bearer ${creds[who.role]}` };
}

/** The body of a request: the call's own in its encoding (form values as JSON text), or raw junk. */
function bodyOf(fields: unknown, data: Payload): { body?: string; headers: Record<string, string> } {
  const ip: Record<string, string> = data.ip === undefined ? {} : { 'cf-connecting-ip': data.ip };
  if (fields === undefined && data.encoding !== 'raw') return { headers: ip };
  if (data.encoding === 'raw') {
    const type = data.contentTypeJson;
    return { body: data.raw, headers: { ...ip, ...(type !== undefined && { 'content-type': type }) } };
  }
  const value = fields ?? data.junkFields;
  if (data.encoding === 'json') {
    return { body: JSON.stringify(value), headers: { ...ip, 'content-type': 'application/json' } };
  }
  const form = new URLSearchParams();
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const [name, member] of Object.entries(value)) {
      form.append(name, typeof member === 'string' ? member : JSON.stringify(member));
    }
  }
  return { body: form.toString(), headers: { ...ip, 'content-type': 'application/x-www-form-urlencoded' } };
}

/** A request of a case, and what it must get: a status (null: anything in shape) and its audit. */
function requestOf(c: Case): { request: FuzzRequest; status: number | null; audit: AuditExpectation } {
  switch (c.kind) {
    case 'admin': {
      const { call, caller: who } = c;
      const { body, headers } = bodyOf(call.body, c.payload);
      const request = { method: call.method, path: call.path, headers: { ...headers, ...credentialHeaders(who) } };
      const withBody = call.method === 'GET' ? request : { ...request, ...(body !== undefined && { body }) };
      if (who.kind !== 'role') return { request: withBody, status: 401, audit: 'sampled' };
      if (!call.roles.includes(who.role)) return { request: withBody, status: 403, audit: 'one' };
      // A form of string members reads as the same fields; any other body is judged by the route's own checks.
      const { encoding } = c.payload;
      const sameFields =
        encoding === 'json' ||
        (encoding === 'form' &&
          typeof call.body === 'object' &&
          call.body !== null &&
          !Array.isArray(call.body) &&
          Object.values(call.body).every((member) => typeof member === 'string'));
      const status = call.method === 'GET' || sameFields ? call.status : (call.statusOtherwise ?? null);
      return { request: withBody, status, audit: call.polled === true ? 'sampled' : 'one' };
    }
    case 'public': {
      const { body, headers } = bodyOf(c.call.method === 'GET' ? undefined : c.payload.junkFields, c.payload);
      const request = {
        method: c.call.method,
        path: c.call.path,
        headers,
        ...(c.call.method !== 'GET' && body !== undefined && { body }),
      };
      return { request, status: c.call.status, audit: c.call.audit };
    }
    case 'wrong_method':
      return { request: { method: c.method, path: c.path }, status: 405, audit: 'none' };
    case 'unknown_path':
      return { request: { method: c.method, path: c.path }, status: 404, audit: 'none' };
  }
}

const ledger = new AuditLedger();
const outcomes = new Map<string, number>();

beforeEach(() => {
  vi.spyOn(globalThis, 'fetch').mockImplementation(async () => new Response(null, { status: 404 }));
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('every route under generated requests', () => {
  it(
    'answers in the spec’s shape, as its role and parameters call for, and audits each decision once',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(routeCase, { minLength: 1, maxLength: 8 }),
          fc.oneof({ weight: 7, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constant(100) }),
          async (cases, flood) => {
            await ledger.begin();
            let flooded = false;
            for (const c of cases) {
              const { request, status, audit } = requestOf(c);
              // A flooding run sends its first unknown caller's refusal over and over: the intake samples them.
              const times: number = !flooded && audit === 'sampled' ? flood : 1;
              flooded ||= times > 1;
              for (let i = 0; i < times; i += 1) {
                const answer = await ledger.send(request, audit);
                checkAnswer(request, answer);
                const got = `${request.method} ${request.path} -> ${answer.status} ${answer.text.slice(0, 200)}`;
                if (status !== null) expect(answer.status, got).toBe(status);
                const key = `${c.kind} ${answer.status}`;
                outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
              }
            }
            await ledger.settle();
          },
        ),
        fuzzParameters(CI_RUNS, MS_PER_CASE),
      );
      const outcomesSeen = Object.fromEntries([...outcomes].sort());
      ledger.report('every route', fuzzRuns(CI_RUNS), outcomesSeen, 'summarised', ledger.summarised);
      // The runs reached the intake's sampling: some refusals were counted in a summary, not recorded one by one.
      if (!longRun) expect(ledger.summarised).toBeGreaterThan(0);
    },
    fuzzTimeout(CI_RUNS, MS_PER_CASE),
  );
});
