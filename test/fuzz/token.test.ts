/**
 * Fuzzing `POST /token` against the real worker, its Durable Objects and D1: sequences of generated requests
 * for the demo agent, each judged against the contract's model (`token-model.ts`) and the suite's oracles.
 *
 * Properties, for every request: no 5xx but a 503 for a store the case made fail; every error in the spec's
 * shape; the status and code the model says; a 200 only with a token that verifies against the JWKS and
 * carries exactly what `authorize()` allows (actions, TTL) for that agent, audience and task. For every run:
 * nothing is used up by a request refused before the agent's object admitted it (the same attestation then
 * gets its token, and the rest of the rate limit's burst still passes); one audit record per decision.
 *
 * The clock is frozen (Durable Objects run in this isolate, so the agent's rate-limit bucket refills only
 * when a run moves the clock): the model knows the bucket exactly. The burst is lowered to 3 so that runs
 * reach the limit.
 */
import fc from 'fast-check';
import {
  type CryptoKey,
  createLocalJWKSet,
  decodeJwt,
  generateKeyPair,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AgentState } from '../../worker/agents/agent-state';
import { loadedPolicy } from '../../worker/policy/loaded';
import { attestation, demoClaims, demoSigningKey, flipChar } from '../helpers/attestation';
import { nowSeconds, useForwardClock } from '../helpers/clock';
import { ISSUER } from '../helpers/demo';
import { type DpopKey, dpopKey, dpopProof } from '../helpers/dpop';
import { JWT_TOKEN_TYPE, TASK_DESCRIPTION } from '../helpers/requests';
import { issue, sha256Base64url } from '../helpers/tokens';
import { respell } from './arbitraries';
import { type Answer, AuditLedger, checkAnswer, type FuzzRequest, send } from './oracles';
import { fuzzParameters, fuzzRuns, fuzzTimeout, longRun } from './params';
import {
  AGENT,
  type AttestationFlaw,
  caseBody,
  type Expected,
  expectedOutcome,
  FINISHED_TASK,
  hangingUpBody,
  type ProofFlaw,
  type RunState,
  TICKETS,
  TOKEN_EXCHANGE,
  type TokenCase,
  tokenCase,
} from './token-model';

const { bundle } = loadedPolicy();
const { settings } = bundle;
/** A burst runs reach: 3 requests, then one a second. */
const RATE_LIMIT = { perMinute: 60, burst: 3 };
/** Seconds that refill the whole burst. */
const REFILL_SECONDS = RATE_LIMIT.burst / (RATE_LIMIT.perMinute / 60) + 1;
const CI_RUNS = 60;
/** About how long one run takes on a loaded machine: the property's time budget and timeout. */
const MS_PER_CASE = 400;
/** Answers the generated requests must reach, one per gate: a generator that stops reaching one is a defect. */
const EVERY_GATE = [
  '200 token',
  '400 authorization_pending',
  '400 invalid_dpop_proof',
  '400 invalid_grant',
  '400 invalid_request',
  '400 invalid_scope',
  '400 invalid_target',
  '413 invalid_request',
  '415 invalid_request',
  '429 slow_down',
  '503 temporarily_unavailable',
];

const clock = useForwardClock();
const ledger = new AuditLedger();
/** How many generated requests got each status and code: the cases must reach every gate. */
const outcomes = new Map<string, number>();
let agentKey: CryptoKey;
let otherKey: CryptoKey;
let proofKey: DpopKey;
let jwks: JWTVerifyGetKey;
const savedRateLimit = { ...settings.rateLimit };

beforeAll(async () => {
  Object.assign(settings.rateLimit, RATE_LIMIT);
  agentKey = await demoSigningKey();
  otherKey = (await generateKeyPair('ES256')).privateKey;
  proofKey = await dpopKey();
});

afterAll(() => {
  Object.assign(settings.rateLimit, savedRateLimit);
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** The approval webhook answers; any other outbound fetch (a trusted issuer's JWKS) is not found. */
function stubOutboundFetch() {
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input) => {
    const url = input instanceof Request ? input.url : String(input);
    return new Response(null, { status: url.startsWith(settings.approvals.webhook ?? '\0') ? 204 : 404 });
  });
}

async function refreshJwks(): Promise<void> {
  const answer = await send({ method: 'GET', path: '/.well-known/jwks.json' });
  jwks = createLocalJWKSet(answer.json as JSONWebKeySet);
}

// ---------------------------------------------------------------------------------------------------------
// Turning a case into a request

/** What a run has: its current attestation, the last it used up, the last DPoP proof admitted. */
interface Run extends RunState {
  current: string;
  used: string | undefined;
  admittedProof: string | undefined;
}

const signCurrent = () => attestation({ key: agentKey });

async function flawedAttestation(flaw: AttestationFlaw, name: string): Promise<string> {
  const now = nowSeconds();
  switch (flaw) {
    case 'expired':
      return attestation({ key: agentKey, claims: { iat: now - 200, exp: now - 60 } });
    case 'too_old':
      return attestation({ key: agentKey, claims: { iat: now - 400, exp: now + 60 } });
    case 'future':
      return attestation({ key: agentKey, claims: { iat: now + 300, exp: now + 400 } });
    case 'audience':
      return attestation({ key: agentKey, claims: { aud: 'https://evil.example.com' } });
    case 'no_jti':
      return attestation({ key: agentKey, omit: ['jti'] });
    case 'long_jti':
      return attestation({ key: agentKey, claims: { jti: 'j'.repeat(300) } });
    case 'prototype_agent':
      return attestation({ key: agentKey, claims: { iss: name, sub: name } });
    case 'unknown_agent':
      return attestation({ key: agentKey, claims: { iss: 'nobody', sub: 'nobody' } });
    case 'issuer_bound_agent':
      return attestation({ key: agentKey, claims: { iss: 'release-bot', sub: 'release-bot' } });
    case 'trusted_issuer':
      return attestation({
        key: agentKey,
        claims: { iss: 'https://token.actions.githubusercontent.com', sub: 'repo:acme/deployer:ref:refs/heads/main' },
      });
    case 'hs256':
      return attestation({ alg: 'HS256', key: new TextEncoder().encode('a shared secret of thirty-two b.') });
    case 'none': {
      const encode = (value: object) => btoa(JSON.stringify(value)).replace(/=+$/, '').replace(/\+/g, '-');
      return `${encode({ alg: 'none' })}.${encode(demoClaims())}.`;
    }
    case 'wrong_key':
      return attestation({ key: otherKey });
    case 'unknown_kid':
      return attestation({ key: agentKey, header: { kid: 'no-such-kid' } });
  }
}

function flawedProof(flaw: ProofFlaw): Promise<string> {
  switch (flaw) {
    case 'htu':
      return dpopProof(proofKey, { htu: `${ISSUER}/introspect` });
    case 'htm':
      return dpopProof(proofKey, { htm: 'GET' });
    case 'old':
      return dpopProof(proofKey, { iat: nowSeconds() - 120 });
    case 'future':
      return dpopProof(proofKey, { iat: nowSeconds() + 120 });
    case 'typ':
      return dpopProof(proofKey, { header: { typ: 'JWT' } });
  }
}

/** A case as the run can send it: `used` and `replayed` need something used up earlier in the run. */
function normalise(tokenCase: TokenCase, run: Run): TokenCase {
  return {
    ...tokenCase,
    subject: tokenCase.subject.kind === 'used' && run.used === undefined ? { kind: 'current' } : tokenCase.subject,
    proof: tokenCase.proof.kind === 'replayed' && run.admittedProof === undefined ? { kind: 'fresh' } : tokenCase.proof,
  };
}

async function subjectToken(tokenCase: TokenCase, run: Run): Promise<unknown> {
  const { subject } = tokenCase;
  switch (subject.kind) {
    case 'current':
      return run.current;
    case 'used':
      return run.used;
    case 'tampered': {
      const [header = '', payload = ''] = run.current.split('.');
      return flipChar(run.current, header.length + 1 + (subject.at % (payload.length - 1)));
    }
    case 'respelt':
      return respell(run.current, subject.how);
    case 'flawed':
      return flawedAttestation(subject.flaw, subject.name);
    case 'junk':
      return subject.value;
    case 'absent':
      return undefined;
  }
}

async function proofHeader(tokenCase: TokenCase, run: Run): Promise<string | undefined> {
  const { proof } = tokenCase;
  switch (proof.kind) {
    case 'none':
      return undefined;
    case 'fresh':
      return dpopProof(proofKey);
    case 'replayed':
      return run.admittedProof;
    case 'flawed':
      return flawedProof(proof.flaw);
    case 'junk':
      return proof.value;
    case 'two': {
      const one = await dpopProof(proofKey);
      return `${one}, ${one}`;
    }
  }
}

const WRAPPED: Record<Exclude<TokenCase['wrapper'], 'none' | 'hangup'>, string> = {
  huge: 'x'.repeat(16 * 1024 + 1),
  array: '[{"grant_type":"urn:ietf:params:oauth:grant-type:token-exchange"}]',
  not_json: '{"grant_type":',
  empty: '',
};

async function materialise(tokenCase: TokenCase, run: Run) {
  const all = { ...tokenCase.fields, subject_token: await subjectToken(tokenCase, run) };
  const built = caseBody(tokenCase, all);
  const { wrapper } = tokenCase;
  const body = wrapper === 'none' ? built.body : wrapper === 'hangup' ? hangingUpBody() : WRAPPED[wrapper];
  const proof = await proofHeader(tokenCase, run);
  const headers: Record<string, string> = {
    ...(tokenCase.contentType !== undefined && { 'content-type': tokenCase.contentType }),
    ...(tokenCase.ip !== undefined && { 'cf-connecting-ip': tokenCase.ip }),
    ...(tokenCase.authorization !== undefined && { authorization: tokenCase.authorization }),
    ...(proof !== undefined && { dpop: proof }),
  };
  const request: FuzzRequest = { method: 'POST', path: '/token', headers, body };
  return { request, built, proof };
}

// ---------------------------------------------------------------------------------------------------------
// Judging the answer

/** A 200 carries a token that verifies and holds exactly what policy allows for this request. */
async function checkGrant(answer: Answer, expected: Extract<Expected, { kind: 'granted' }>): Promise<void> {
  const body = answer.json as Record<string, unknown>;
  const token = body.access_token as string;
  const { request, authorization } = expected;
  let verified: Awaited<ReturnType<typeof jwtVerify>>;
  const verify = () =>
    jwtVerify(token, jwks, {
      issuer: ISSUER,
      audience: request.audience,
      typ: 'at+jwt',
      algorithms: ['ES256'],
      currentDate: new Date(),
    });
  try {
    verified = await verify();
  } catch {
    await refreshJwks();
    verified = await verify();
  }
  const claims = verified.payload as Record<string, unknown> & { task: { id: string; hash: string } };
  const iat = nowSeconds();
  expect(claims).toMatchObject({
    sub: AGENT,
    client_id: AGENT,
    owner: bundle.agents[AGENT]?.owner,
    policy: bundle.version,
    scope: authorization.actions.join(' '),
    iat,
    nbf: iat,
    exp: iat + authorization.ttl,
  });
  expect(claims.approval).toBeUndefined();
  // Within policy, whatever authorize() says: no action not asked for, no lifetime past what was asked or the cap.
  expect((claims.scope as string).split(' ').every((action) => request.actions.includes(action))).toBe(true);
  expect(authorization.ttl).toBeLessThanOrEqual(Math.min(request.requestedTtl ?? 3600, 3600));
  expect(claims.task.hash).toBe(await sha256Base64url(request.description));
  if (request.taskId !== undefined) expect(claims.task.id).toBe(request.taskId);
  else expect(claims.task.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  expect(claims.cnf).toEqual(expected.bound ? { jkt: proofKey.jkt } : undefined);
  expect(body).toEqual({
    access_token: token,
    issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    token_type: expected.bound ? 'DPoP' : 'Bearer',
    expires_in: authorization.ttl,
    scope: claims.scope,
    task_id: claims.task.id,
  });
}

async function checkExpected(answer: Answer, expected: Expected): Promise<void> {
  const body = (answer.json ?? {}) as Record<string, unknown>;
  const got = `${answer.status} ${answer.text.slice(0, 300)}`;
  switch (expected.kind) {
    case 'refused':
      expect({ status: answer.status, error: body.error }, got).toEqual({
        status: expected.status,
        error: expected.code,
      });
      return;
    case 'pending':
      expect({ status: answer.status, error: body.error }, got).toEqual({
        status: 400,
        error: 'authorization_pending',
      });
      expect(body.approval_id).toMatch(/^[0-9a-f-]{36}\.demo-agent$/);
      return;
    case 'unavailable':
      expect({ status: answer.status, error: body.error }, got).toEqual({
        status: 503,
        error: 'temporarily_unavailable',
      });
      return;
    case 'granted':
      expect(answer.status, got).toBe(200);
      await checkGrant(answer, expected);
  }
}

/** Sends one case, judges its answer, and updates what the run has used up. */
async function exchangeCase(generated: TokenCase, run: Run): Promise<void> {
  const tokenCase = normalise(generated, run);
  const { request, built, proof } = await materialise(tokenCase, run);
  const expected = expectedOutcome(tokenCase, built, run, new Date());
  // A store made to fail: the broker logs each refusal it cannot record in the agent's object, and nothing else.
  const logged = tokenCase.storeDown ? vi.spyOn(console, 'error').mockImplementation(() => {}) : undefined;
  if (tokenCase.storeDown) {
    vi.spyOn(AgentState.prototype, 'exchange').mockRejectedValue(new Error('storage is down'));
    vi.spyOn(AgentState.prototype, 'record').mockRejectedValue(new Error('storage is down'));
  }
  let answer: Answer;
  try {
    answer = await ledger.send(request, expected.audit, expected.kind === 'refused' ? expected.reason : undefined);
  } finally {
    if (tokenCase.storeDown) {
      vi.mocked(AgentState.prototype.exchange).mockRestore();
      vi.mocked(AgentState.prototype.record).mockRestore();
      logged?.mockRestore();
    }
  }
  if (logged !== undefined) {
    if (expected.kind === 'refused' && expected.reason === 'store_unavailable') expect(logged).toHaveBeenCalled();
    for (const call of logged.mock.calls) {
      expect(call).toEqual([
        'agent object could not record a refusal',
        expect.any(String),
        expect.objectContaining({ reason: 'store_unavailable' }),
      ]);
    }
  }
  checkAnswer(request, answer, { storeDown: tokenCase.storeDown });
  await checkExpected(answer, expected);
  const outcome = `${answer.status} ${(answer.json as { error?: string } | undefined)?.error ?? 'token'}`;
  outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  if (expected.admitted) {
    run.bucket -= 1;
    run.used = run.current;
    run.current = await signCurrent();
    if (proof !== undefined) run.admittedProof = proof;
  }
}

/** A valid request with the run's current attestation, for the rest of the burst. */
function validRequest(run: Run): FuzzRequest {
  return {
    method: 'POST',
    path: '/token',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      grant_type: TOKEN_EXCHANGE,
      subject_token: run.current,
      subject_token_type: JWT_TOKEN_TYPE,
      audience: TICKETS,
      scope: 'tickets:read',
      task: { description: TASK_DESCRIPTION },
    }),
  };
}

/**
 * What the run left: the current attestation was not used up by any refusal before admission (it gets its
 * token now), and neither was any slot of the rate limit (the rest of the burst passes, then no more).
 */
async function checkNothingConsumed(run: Run): Promise<void> {
  while (run.bucket >= 1) {
    const request = validRequest(run);
    const answer = await ledger.send(request, 'one');
    checkAnswer(request, answer);
    expect(answer.status, `the attestation and the burst are still there: ${answer.text}`).toBe(200);
    run.bucket -= 1;
    run.current = await signCurrent();
  }
  const request = validRequest(run);
  const answer = await ledger.send(request, 'one');
  checkAnswer(request, answer);
  expect(answer.status, `the burst is spent: ${answer.text}`).toBe(429);
}

describe('POST /token under generated requests', () => {
  it(
    'answers each as the contract says, grants only within policy, uses up nothing it refuses, audits each once',
    async () => {
      stubOutboundFetch();
      await refreshJwks();
      const finishing = await issue(FINISHED_TASK);
      const completed = await send({
        method: 'POST',
        path: `/tasks/${FINISHED_TASK}/complete`,
        headers: { authorization: `Bearer ${finishing.token}` },
      });
      expect(completed.status).toBe(200);
      expect(decodeJwt(finishing.token).sub).toBe(AGENT);

      await fc.assert(
        fc.asyncProperty(fc.array(tokenCase, { minLength: 1, maxLength: 8 }), async (cases) => {
          await ledger.begin();
          clock.advance(REFILL_SECONDS);
          const run: Run = {
            bucket: RATE_LIMIT.burst,
            current: await signCurrent(),
            used: undefined,
            admittedProof: undefined,
          };
          for (const generated of cases) await exchangeCase(generated, run);
          await checkNothingConsumed(run);
          await ledger.settle();
        }),
        fuzzParameters(CI_RUNS, MS_PER_CASE),
      );
      ledger.report('POST /token', fuzzRuns(CI_RUNS), Object.fromEntries([...outcomes].sort()));
      if (!longRun) expect([...outcomes.keys()]).toEqual(expect.arrayContaining(EVERY_GATE));
    },
    fuzzTimeout(CI_RUNS, MS_PER_CASE),
  );
});
