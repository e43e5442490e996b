/**
 * `POST /token` for the fuzz suite: generated cases (fields from the schema and beyond it, both encodings,
 * content types, attestations and DPoP proofs good and bad, a store made to fail), and a model of what the
 * contract says each must get, written from `docs/api.md` rather than from the worker's schema: the request's
 * grammar, the order of the gates, and what the agent's object uses up (the attestation, the DPoP proof, a
 * slot of the rate limit). Policy decisions come from `authorize()` (`worker/core/policy.ts`), the function
 * the property holds every grant to.
 */
import fc from 'fast-check';
import { BrokerError } from '../../worker/core/errors';
import { type Authorization, authorize } from '../../worker/core/policy';
import { loadedPolicy } from '../../worker/policy/loaded';
import {
  ABSENT,
  connectingIp,
  contentType,
  edgeString,
  headerValue,
  junk,
  mostly,
  PROTOTYPE_NAMES,
  type Respelling,
  wrongType,
} from './arbitraries';
import type { AuditExpectation } from './oracles';

const { bundle, engine } = loadedPolicy();

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const SUBJECT_TOKEN_TYPES = ['urn:ietf:params:oauth:token-type:jwt', 'urn:ietf:params:oauth:token-type:id_token'];
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const AGENT = 'demo-agent';
export const TICKETS = 'https://tickets.example.com';
export const PAYMENTS = 'https://payments.example.com';
/** A task the suite finishes before it starts: no token is issued for it again. */
export const FINISHED_TASK = 'fuzz-finished-task';
/** The most bytes a body may have (docs/api.md: "body over 16 KiB"). */
const MAX_BODY_BYTES = 16 * 1024;

/** Each API and the actions the schema has for it: a scope drawn from these is often granted. */
const ACTIONS_BY_API: Readonly<Record<string, readonly string[]>> = {
  [TICKETS]: ['tickets:read', 'tickets:comment', 'tickets:close'],
  'https://graph.example.com': ['graph:read', 'graph:attack-path'],
  'https://iam.example.com': ['iam:read-user', 'iam:disable-user', 'iam:rotate-key'],
  [PAYMENTS]: ['payments:refund'],
  'https://unknown.example.com': ['tickets:read'],
};

// ---------------------------------------------------------------------------------------------------------
// Cases

/** How an attestation is flawed; each is refused `invalid_grant` (docs/api.md: "attestation bad"). */
export type AttestationFlaw =
  | 'expired'
  | 'too_old'
  | 'future'
  | 'audience'
  | 'no_jti'
  | 'long_jti'
  | 'prototype_agent'
  | 'unknown_agent'
  | 'issuer_bound_agent'
  | 'trusted_issuer'
  | 'hs256'
  | 'none'
  | 'wrong_key'
  | 'unknown_kid';

export type Subject =
  /** The run's current attestation: valid, and unused until the agent's object admits a request with it. */
  | { kind: 'current' }
  /** An attestation of this run that the agent's object admitted already. */
  | { kind: 'used' }
  /** The current attestation with one character of its payload changed. */
  | { kind: 'tampered'; at: number }
  /** The current attestation in another spelling of the same bytes. */
  | { kind: 'respelt'; how: Respelling }
  | { kind: 'flawed'; flaw: AttestationFlaw; name: string }
  /** Not an attestation at all (a wrong type included). */
  | { kind: 'junk'; value: unknown }
  | { kind: 'absent' };

/** How a DPoP proof is flawed; each is refused `invalid_dpop_proof` (RFC 9449 §4.3). */
export type ProofFlaw = 'htu' | 'htm' | 'old' | 'future' | 'typ';

export type Proof =
  | { kind: 'none' }
  | { kind: 'fresh' }
  /** The last proof of this run that the agent's object admitted. */
  | { kind: 'replayed' }
  | { kind: 'flawed'; flaw: ProofFlaw }
  | { kind: 'junk'; value: string }
  /** Two proofs, as two `DPoP` headers arrive: joined by a comma. */
  | { kind: 'two' };

/** A body the model knows is wrong whatever its fields. */
export type Wrapper = 'none' | 'huge' | 'hangup' | 'array' | 'not_json' | 'empty';

export interface TokenCase {
  /** Every field but `subject_token`; `undefined` is a field left out. */
  fields: Record<string, unknown>;
  subject: Subject;
  encoding: 'json' | 'form';
  contentType: string | undefined;
  /** A field sent first with this value: twice, when the request has that field too. */
  duplicate: { name: string; first: unknown } | undefined;
  wrapper: Wrapper;
  proof: Proof;
  ip: string | undefined;
  /** An `Authorization` header `/token` has no use for. */
  authorization: string | undefined;
  /** The agent's object fails for this request (it throws). */
  storeDown: boolean;
}

const validTaskId = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,40}$/);

const task = fc
  .record({
    description: fc.oneof(
      { weight: 24, arbitrary: fc.constantFrom('Summarise ticket T-1234', 'Disable j.doe (INC-77)', 'Map paths') },
      { weight: 3, arbitrary: edgeString },
      { weight: 1, arbitrary: fc.constantFrom('d'.repeat(4096), 'd'.repeat(4097), '😀'.repeat(2048)) },
      { weight: 1, arbitrary: wrongType },
      { weight: 1, arbitrary: fc.constant(ABSENT) },
    ),
    id: fc.oneof(
      { weight: 12, arbitrary: fc.constant(ABSENT) },
      { weight: 12, arbitrary: validTaskId },
      { weight: 1, arbitrary: fc.constant(FINISHED_TASK) },
      { weight: 1, arbitrary: fc.constantFrom(...PROTOTYPE_NAMES) },
      { weight: 1, arbitrary: fc.constantFrom('x'.repeat(128), 'x'.repeat(129), '-x', 'a b', 'a/b') },
      { weight: 1, arbitrary: junk },
    ),
    justification: fc.oneof(
      { weight: 18, arbitrary: fc.constant(ABSENT) },
      { weight: 9, arbitrary: fc.constant('INC-4821: suspected lateral movement') },
      { weight: 1, arbitrary: fc.constantFrom('   ', '\t\n', '\u00a0', 'j'.repeat(4097)) },
      { weight: 1, arbitrary: junk },
    ),
    extra: fc.oneof(
      { weight: 30, arbitrary: fc.constant(ABSENT) },
      { weight: 1, arbitrary: fc.constantFrom('scope', 'owner', '__proto__', 'constructor') },
    ),
  })
  .map(({ extra, ...members }) => ({ ...members, ...(extra !== undefined && { [extra]: 'x' }) }));

const scopeFor = (audience: string) => {
  const actions = (Object.hasOwn(ACTIONS_BY_API, audience) && ACTIONS_BY_API[audience]) || bundle.cedar.actions;
  const action = fc.oneof(
    { weight: 30, arbitrary: fc.constantFrom(...actions) },
    { weight: 4, arbitrary: fc.constantFrom(...bundle.cedar.actions) },
    { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,20}$/) },
    { weight: 1, arbitrary: edgeString },
  );
  const separator = fc.oneof(
    { weight: 30, arbitrary: fc.constant(' ') },
    { weight: 1, arbitrary: fc.constantFrom('  ', ',', ', ', '\t', '+', '\n') },
  );
  return fc.oneof(
    { weight: 40, arbitrary: fc.tuple(fc.array(action, { minLength: 1, maxLength: 3 }), separator) },
    { weight: 1, arbitrary: fc.constant([Array.from({ length: 33 }, (_, i) => `a${i}`), ' '] as const) },
    { weight: 1, arbitrary: fc.constant([[' ', ''], ' '] as const) },
  );
};

const target = fc
  .oneof(
    { weight: 30, arbitrary: fc.constantFrom(...Object.keys(ACTIONS_BY_API)) },
    { weight: 2, arbitrary: edgeString },
  )
  .chain((audience) =>
    fc.record({
      audience: fc.oneof(
        { weight: 40, arbitrary: fc.constant(audience) },
        { weight: 1, arbitrary: fc.constant(ABSENT) },
        { weight: 1, arbitrary: wrongType },
      ),
      resource: fc.oneof(
        { weight: 36, arbitrary: fc.constant(ABSENT) },
        { weight: 4, arbitrary: fc.constant(audience) },
        { weight: 1, arbitrary: fc.constantFrom(TICKETS, 'https://other.example.com') },
        { weight: 1, arbitrary: junk },
      ),
      scope: fc.oneof(
        { weight: 40, arbitrary: scopeFor(audience).map(([actions, separator]) => actions.join(separator)) },
        { weight: 1, arbitrary: fc.constant(ABSENT) },
        { weight: 1, arbitrary: wrongType },
      ),
    }),
  );

/** Requests of the demo policy that pass each gate when nothing is wrong with them: a grant on each API, a
 * dual-use action with its justification, a destructive one that needs approval, one that needs DPoP. */
const PRESETS = [
  { audience: TICKETS, scope: 'tickets:read tickets:comment', task: { description: 'Summarise ticket T-1234' } },
  {
    audience: 'https://graph.example.com',
    scope: 'graph:read graph:attack-path',
    task: { description: 'Map attack paths', justification: 'INC-4821: suspected lateral movement' },
  },
  {
    audience: 'https://iam.example.com',
    scope: 'iam:disable-user',
    task: { description: 'Disable j.doe (INC-77)', justification: 'account taken over, SOC confirmed' },
  },
  { audience: PAYMENTS, scope: 'payments:refund', task: { description: 'Refund order 1234' } },
];

const preset = fc
  .record({
    preset: fc.constantFrom(...PRESETS),
    requested_ttl: fc.oneof(fc.constant(ABSENT), fc.integer({ min: 1, max: 4000 })),
    id: fc.oneof(fc.constant(ABSENT), validTaskId),
  })
  .map(({ preset: { task, ...target }, requested_ttl, id }) => ({
    grant_type: TOKEN_EXCHANGE,
    subject_token_type: SUBJECT_TOKEN_TYPES[0],
    ...target,
    task: { ...task, id },
    requested_ttl,
  }));

const generatedFields = fc
  .record({
    grant_type: mostly(fc.constant(TOKEN_EXCHANGE), fc.oneof(edgeString, wrongType, fc.constant('client_credentials'))),
    subject_token_type: mostly(fc.constantFrom(...SUBJECT_TOKEN_TYPES)),
    target,
    task: fc.oneof(
      { weight: 40, arbitrary: task },
      // A JSON string: what the form encoding sends, and what the JSON encoding may send too.
      { weight: 3, arbitrary: task.map((members) => JSON.stringify(members)) },
      { weight: 1, arbitrary: junk },
      { weight: 1, arbitrary: fc.constant(ABSENT) },
    ),
    requested_ttl: fc.oneof(
      { weight: 30, arbitrary: fc.constant(ABSENT) },
      { weight: 8, arbitrary: fc.integer({ min: 1, max: 4000 }) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 4000 }).map(String) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(0, -1, 1.5, 86_400, 86_401, 1e21, '300s', '0300', ' 300', '', '1e3', '-5'),
      },
      { weight: 1, arbitrary: junk },
    ),
    approval_id: fc.oneof(
      { weight: 20, arbitrary: fc.constant(ABSENT) },
      { weight: 1, arbitrary: fc.uuid().map((id) => `${id}.${AGENT}`) },
      { weight: 1, arbitrary: fc.uuid().map((id) => `${id}.release-bot`) },
      { weight: 1, arbitrary: fc.constantFrom(...PROTOTYPE_NAMES.map((name) => `${crypto.randomUUID()}.${name}`)) },
      { weight: 1, arbitrary: junk },
    ),
    rare: fc.oneof(
      { weight: 20, arbitrary: fc.constant({}) },
      { weight: 1, arbitrary: fc.record({ actor_token: junk }) },
      { weight: 1, arbitrary: fc.record({ requested_token_type: fc.oneof(fc.constant(ACCESS_TOKEN_TYPE), junk) }) },
      { weight: 1, arbitrary: fc.dictionary(fc.constantFrom(...PROTOTYPE_NAMES, 'client_id', 'x'), junk) },
    ),
  })
  .map(({ target: { audience, resource, scope }, rare, ...rest }) => ({
    ...rest,
    audience,
    resource,
    scope,
    ...rare,
  }));

const fields = fc.oneof({ weight: 3, arbitrary: generatedFields }, { weight: 1, arbitrary: preset });

const FLAWS: readonly AttestationFlaw[] = [
  'expired',
  'too_old',
  'future',
  'audience',
  'no_jti',
  'long_jti',
  'prototype_agent',
  'unknown_agent',
  'issuer_bound_agent',
  'trusted_issuer',
  'hs256',
  'none',
  'wrong_key',
  'unknown_kid',
];

const subject: fc.Arbitrary<Subject> = fc.oneof(
  { weight: 60, arbitrary: fc.constant({ kind: 'current' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'used' as const }) },
  { weight: 1, arbitrary: fc.nat({ max: 200 }).map((at) => ({ kind: 'tampered' as const, at })) },
  {
    weight: 3,
    arbitrary: fc.constantFrom<Respelling>('padded', 'trailing_bits').map((how) => ({ kind: 'respelt' as const, how })),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({ flaw: fc.constantFrom(...FLAWS), name: fc.constantFrom(...PROTOTYPE_NAMES) })
      .map(({ flaw, name }) => ({ kind: 'flawed' as const, flaw, name })),
  },
  { weight: 2, arbitrary: junk.map((value) => ({ kind: 'junk' as const, value })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'absent' as const }) },
);

const proof: fc.Arbitrary<Proof> = fc.oneof(
  { weight: 30, arbitrary: fc.constant({ kind: 'none' as const }) },
  { weight: 8, arbitrary: fc.constant({ kind: 'fresh' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'replayed' as const }) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom<ProofFlaw>('htu', 'htm', 'old', 'future', 'typ')
      .map((flaw) => ({ kind: 'flawed' as const, flaw })),
  },
  { weight: 1, arbitrary: headerValue.map((value) => ({ kind: 'junk' as const, value })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'two' as const }) },
);

/** One generated `/token` request. */
export const tokenCase: fc.Arbitrary<TokenCase> = fc
  .record({
    fields,
    subject,
    encoding: fc.constantFrom<'json' | 'form'>('json', 'form'),
    duplicate: fc.oneof(
      { weight: 40, arbitrary: fc.constant(undefined) },
      {
        weight: 8,
        arbitrary: fc.record({
          // Mostly a field the request has (then it is sent twice), else a name it may not have.
          name: fc.oneof(
            { weight: 4, arbitrary: fc.constantFrom('scope', 'audience', 'grant_type', 'task', 'subject_token') },
            { weight: 1, arbitrary: fc.constant('unknown_field') },
            { weight: 1, arbitrary: edgeString.filter((name) => name.isWellFormed()) },
          ),
          first: fc.oneof(fc.constant('tickets:read'), junk),
        }),
      },
    ),
    wrapper: fc.oneof(
      { weight: 80, arbitrary: fc.constant<Wrapper>('none') },
      { weight: 6, arbitrary: fc.constantFrom<Wrapper>('huge', 'hangup', 'array', 'not_json', 'empty') },
    ),
    proof,
    ip: connectingIp,
    authorization: fc.oneof(
      { weight: 8, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: headerValue.map((value) => `Bearer ${value}`) },
    ),
    storeDown: fc.oneof({ weight: 25, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  })
  .chain((base) =>
    contentType(base.encoding === 'json' ? 'application/json' : 'application/x-www-form-urlencoded').map(
      (type): TokenCase => ({ ...base, contentType: type }),
    ),
  );

// ---------------------------------------------------------------------------------------------------------
// Bodies

/** What a field becomes in a form body: strings as they are, anything else as JSON (the spec's `task`). */
const formValue = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

/**
 * The body of a case, and the fields the broker decodes from it when it decodes them (`undefined` when the
 * body cannot be decoded at all): what the model judges.
 */
export function caseBody(
  tokenCase: TokenCase,
  all: Record<string, unknown>,
): { body: BodyInit; decoded: Record<string, unknown> | undefined; bytes: number; repeated: boolean } {
  const present = Object.entries(all).filter(([, value]) => value !== undefined);
  const { duplicate } = tokenCase;
  const repeated = duplicate !== undefined && present.some(([name]) => name === duplicate.name);
  if (tokenCase.encoding === 'json') {
    const members = present.map(([name, value]) => `${JSON.stringify(name)}:${JSON.stringify(value)}`);
    if (duplicate !== undefined)
      members.unshift(`${JSON.stringify(duplicate.name)}:${JSON.stringify(duplicate.first)}`);
    const text = `{${members.join(',')}}`;
    return { body: text, decoded: JSON.parse(text) as Record<string, unknown>, bytes: utf8Length(text), repeated };
  }
  const form = new URLSearchParams();
  if (duplicate !== undefined) form.append(duplicate.name, formValue(duplicate.first));
  for (const [name, value] of present) form.append(name, formValue(value));
  const text = form.toString();
  return {
    body: text,
    decoded: Object.fromEntries(new URLSearchParams(text)),
    bytes: utf8Length(text),
    repeated,
  };
}

const utf8Length = (text: string) => new TextEncoder().encode(text).byteLength;

/**
 * A body that declares twice the length it sends before the client hangs up: the stream is aborted part-way,
 * as a connection reset leaves it. (A stream that only errors, with no declared length, reaches the worker
 * as a body that ended early, which is not a hang-up it can tell.)
 */
export function hangingUpBody(): ReadableStream<Uint8Array> {
  const head = new TextEncoder().encode('grant_type=urn%3Aietf');
  const { readable, writable } = new FixedLengthStream(head.byteLength * 2);
  const writer = writable.getWriter();
  // Not awaited: the write goes through as the broker reads, and then the client is gone.
  writer.write(head).then(
    () => writer.abort(new Error('the client hung up')),
    () => undefined,
  );
  return readable;
}

// ---------------------------------------------------------------------------------------------------------
// The contract's grammar of a token request (docs/api.md, RFC 8693 §2.1)

/** A request the contract accepts, as the gates after parsing see it. */
export interface SpecRequest {
  audience: string;
  /** The scope's actions, each once, in the order asked. */
  actions: string[];
  description: string;
  taskId: string | undefined;
  justification: boolean;
  requestedTtl: number | undefined;
  approvalId: string | undefined;
}

const isString = (value: unknown): value is string => typeof value === 'string';
const ACTION = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;
const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Whether every string in `value`, member names included, is well-formed UTF-16 (no lone surrogate). */
function wellFormedDeep(value: unknown): boolean {
  if (typeof value === 'string') return value.isWellFormed();
  if (Array.isArray(value)) return value.every(wellFormedDeep);
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).every(([name, member]) => name.isWellFormed() && wellFormedDeep(member));
  }
  return true;
}

/**
 * The request the contract reads from decoded fields, or undefined when it is `invalid_request`: a field
 * missing, of the wrong type or out of its range, an unknown field value, a lone surrogate anywhere.
 * Unknown fields are ignored (RFC 6749 §3.2). Lengths are in UTF-16 code units.
 */
export function specRequest(raw: Record<string, unknown>): SpecRequest | undefined {
  let task = raw.task;
  if (isString(task)) {
    try {
      task = JSON.parse(task);
    } catch {
      return undefined;
    }
  }
  if (!wellFormedDeep(raw) || !wellFormedDeep(task)) return undefined;
  if (raw.grant_type !== TOKEN_EXCHANGE) return undefined;
  const subjectToken = raw.subject_token;
  if (!isString(subjectToken) || subjectToken.length < 1 || subjectToken.length > MAX_BODY_BYTES) return undefined;
  if (!SUBJECT_TOKEN_TYPES.includes(raw.subject_token_type as string)) return undefined;
  if (raw.requested_token_type !== undefined && raw.requested_token_type !== ACCESS_TOKEN_TYPE) return undefined;
  if (raw.actor_token !== undefined) return undefined;
  const target = (value: unknown) =>
    value === undefined || (isString(value) && value.length >= 1 && value.length <= 512);
  if (!target(raw.audience) || !target(raw.resource)) return undefined;
  if (raw.audience !== undefined && raw.resource !== undefined && raw.audience !== raw.resource) return undefined;
  const audience = (raw.audience ?? raw.resource) as string | undefined;
  if (audience === undefined) return undefined;
  if (!isString(raw.scope)) return undefined;
  const actions = [...new Set(raw.scope.split(' ').filter((action) => action !== ''))];
  if (actions.length < 1 || actions.length > 32 || !actions.every((action) => ACTION.test(action))) return undefined;
  if (typeof task !== 'object' || task === null || Array.isArray(task)) return undefined;
  const members = task as Record<string, unknown>;
  if (!Object.keys(members).every((name) => ['description', 'id', 'justification'].includes(name))) return undefined;
  const { description, id, justification } = members;
  if (!isString(description) || description.length < 1 || description.length > 4096) return undefined;
  if (id !== undefined && !(isString(id) && TASK_ID.test(id))) return undefined;
  if (justification !== undefined) {
    if (!isString(justification)) return undefined;
    const trimmed = justification.trim();
    if (trimmed.length < 1 || trimmed.length > 4096) return undefined;
  }
  const ttl = raw.requested_ttl;
  let requestedTtl: number | undefined;
  if (typeof ttl === 'number') requestedTtl = ttl;
  else if (isString(ttl) && /^[0-9]{1,9}$/.test(ttl)) requestedTtl = Number(ttl);
  else if (ttl !== undefined) return undefined;
  if (requestedTtl !== undefined && !(Number.isInteger(requestedTtl) && requestedTtl >= 1 && requestedTtl <= 86_400))
    return undefined;
  const approvalId = raw.approval_id;
  if (approvalId !== undefined && !(isString(approvalId) && approvalId.length >= 1 && approvalId.length <= 200))
    return undefined;
  return {
    audience,
    actions,
    description,
    taskId: id as string | undefined,
    justification: justification !== undefined,
    requestedTtl,
    approvalId: approvalId as string | undefined,
  };
}

// ---------------------------------------------------------------------------------------------------------
// The model

/** What a case must get. */
export type Expected =
  | {
      kind: 'refused';
      status: number;
      code: string;
      admitted: boolean;
      audit: AuditExpectation;
      /** The audit reason, for a body refused before its fields are read (`worker/core/errors.ts`). */
      reason?: string;
    }
  | { kind: 'pending'; admitted: true; audit: 'one' }
  | {
      kind: 'granted';
      request: SpecRequest;
      authorization: Authorization;
      bound: boolean;
      admitted: true;
      audit: 'one';
    }
  | { kind: 'unavailable'; admitted: false; audit: 'one' };

/** What the agent's object holds of this run, as far as the model is concerned. */
export interface RunState {
  /** Requests the rate limit still lets through. */
  bucket: number;
}

const refused = (status: number, code: string, audit: AuditExpectation, admitted = false): Expected => ({
  kind: 'refused',
  status,
  code,
  admitted,
  audit,
});

/** A body refused before its fields are read, with the reason its record gives. */
const refusedBody = (status: number, reason: string): Expected => ({
  kind: 'refused',
  status,
  code: 'invalid_request',
  admitted: false,
  audit: 'sampled',
  reason,
});

const APPROVAL_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.([a-z0-9][a-z0-9._-]{0,63})$/;

/**
 * What the contract says a case gets, gate by gate (a `used` subject and a `replayed` proof are ones the
 * agent's object admitted earlier in the run): the body (415, 413, 400), the request's grammar (400
 * `invalid_request`), the attestation (`invalid_grant`), the DPoP proof, policy (`authorize()`), and the
 * agent's object: a used attestation or proof, a finished task, the rate limit, and only then a decision,
 * which uses up the attestation, the proof and a slot of the rate limit.
 */
export function expectedOutcome(
  tokenCase: TokenCase,
  body: { decoded: Record<string, unknown> | undefined; bytes: number; repeated: boolean },
  state: RunState,
  now: Date,
): Expected {
  const media = (tokenCase.contentType ?? '').split(';')[0]?.trim().toLowerCase();
  const type = media === 'application/json' ? 'json' : media === 'application/x-www-form-urlencoded' ? 'form' : null;
  if (type === null) return refusedBody(415, 'unsupported_media_type');
  const { wrapper } = tokenCase;
  // Only an unwrapped body is the case's own fields; the others are sent instead of them.
  if (wrapper === 'huge' || (wrapper === 'none' && body.bytes > MAX_BODY_BYTES))
    return refusedBody(413, 'body_too_large');
  if (wrapper === 'hangup') return refusedBody(400, 'client_disconnected');
  // An empty form is a form of no fields, which the grammar refuses; nothing else of these parses.
  if (wrapper === 'empty' && type === 'form') return refused(400, 'invalid_request', 'sampled');
  if (wrapper !== 'none') return refusedBody(400, 'malformed_body');
  // A body in one encoding under the other's content type does not decode; a field sent twice is refused.
  if (type !== tokenCase.encoding) return refusedBody(400, 'malformed_body');
  if (body.repeated) return refusedBody(400, 'invalid_field');
  if (body.decoded === undefined) return refused(400, 'invalid_request', 'sampled');
  const request = specRequest(body.decoded);
  if (request === undefined) return refused(400, 'invalid_request', 'sampled');

  const { subject, proof } = tokenCase;
  if (subject.kind !== 'current' && subject.kind !== 'used') return refused(400, 'invalid_grant', 'sampled');
  // From here the caller is known: every refusal is recorded in full, in its chain.
  if (proof.kind === 'flawed' || proof.kind === 'junk' || proof.kind === 'two')
    return refused(400, 'invalid_dpop_proof', 'one');
  const bound = proof.kind === 'fresh' || proof.kind === 'replayed';
  const agent = bundle.agents[AGENT];
  if (agent === undefined) throw new Error('the demo agent is not in the inventory');
  if (!bound && (agent.requireDpop || bundle.settings.dpop.requiredAudiences.includes(request.audience)))
    return refused(400, 'invalid_request', 'one');
  if (request.approvalId !== undefined && APPROVAL_ID.exec(request.approvalId)?.[1] !== AGENT)
    return refused(400, 'invalid_grant', 'one');

  let decision: { authorization: Authorization } | { code: string; status: number };
  try {
    decision = {
      authorization: authorize(engine, bundle, {
        agent,
        audience: request.audience,
        actions: request.actions,
        requestedTtl: request.requestedTtl,
        justification: request.justification,
        approved: request.approvalId !== undefined,
        taskId: request.taskId ?? 'generated',
        via: 'self',
        now,
      }),
    };
  } catch (error) {
    if (!(error instanceof BrokerError)) throw error;
    decision = { code: error.code, status: error.status };
  }

  if (tokenCase.storeDown) return { kind: 'unavailable', admitted: false, audit: 'one' };
  // A replay is sampled per attestation: in full while its window's sample lasts, counted after.
  if (subject.kind === 'used') return refused(400, 'invalid_grant', 'sampled');
  if (proof.kind === 'replayed') return refused(400, 'invalid_dpop_proof', 'one');
  if (request.taskId === FINISHED_TASK) return refused(400, 'invalid_request', 'one');
  if (state.bucket < 1) return refused(429, 'slow_down', 'one');
  // Admitted: whatever the decision, the attestation, the proof and a slot are used up.
  if (request.approvalId !== undefined) return refused(400, 'invalid_grant', 'one', true);
  if ('code' in decision) return refused(decision.status, decision.code, 'one', true);
  if (decision.authorization.approval !== undefined) return { kind: 'pending', admitted: true, audit: 'one' };
  return { kind: 'granted', request, authorization: decision.authorization, bound, admitted: true, audit: 'one' };
}
