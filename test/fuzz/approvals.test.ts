/**
 * Fuzzing step-up approval: an approval is decided only by a valid decision of an allowed approver, and
 * collected only by the one poll that asks for exactly its terms. Each run opens an approval (`iam:disable-user`
 * needs one), sends generated decisions that are wrong in some way (the approval stays pending), approves it,
 * sends generated polls that are wrong in some way (their body, a field, the terms, the attestation, the
 * approval id: none collects it), and then the right poll collects it once, and only once.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { loadedPolicy } from '../../worker/policy/loaded';
import { adminFetch, bearer } from '../helpers/admin';
import { openApproval, type Pending, poll } from '../helpers/approvals';
import { attestation } from '../helpers/attestation';
import { useForwardClock } from '../helpers/clock';
import { type ExchangeFields, exchangeFields } from '../helpers/requests';
import { contentType, junk, PROTOTYPE_NAMES, wrongType } from './arbitraries';
import { AuditLedger, checkAnswer, type FuzzRequest } from './oracles';
import { fuzzParameters, fuzzRuns, fuzzTimeout } from './params';

const { settings } = loadedPolicy().bundle;
const CI_RUNS = 12;
/** About how long one run takes on a loaded machine: the property's time budget and timeout. */
const MS_PER_CASE = 1500;
const clock = useForwardClock();
const ledger = new AuditLedger();

beforeEach(() => {
  vi.spyOn(globalThis, 'fetch').mockImplementation(async () => new Response(null, { status: 204 }));
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** A decision that must not decide: a wrong body, or a caller who may not decide. */
const wrongDecision = fc.oneof(
  fc.record({
    credential: fc.constant(creds.approver),
    body: fc.oneof(
      fc.constantFrom(
        {},
        { decision: 'approve' },
        { decision: 'approve', reason: '  ' },
        { decision: 'APPROVE', reason: 'x' },
      ),
      fc.record({ decision: fc.oneof(junk, fc.constant('maybe')), reason: fc.constant('x') }),
      fc.record({ decision: fc.constant('approve'), reason: fc.oneof(wrongType, fc.constant('r'.repeat(1001))) }),
      wrongType,
    ),
  }),
  fc.record({
    credential: fc.constantFrom(creds.admin, creds.auditor, 'tessera_admin.demo-approver.wrong'),
    body: fc.constant({ decision: 'approve', reason: 'looks right' }),
  }),
);

/** How a poll differs from the one that collects. */
type PollFlaw =
  | { kind: 'terms'; change: ExchangeFields }
  | { kind: 'field'; name: string; value: unknown }
  | { kind: 'approval_id'; value: unknown }
  | { kind: 'attestation'; claims: Record<string, unknown> }
  | { kind: 'content_type'; type: string | undefined }
  | { kind: 'repeated' };

const pollFlaw: fc.Arbitrary<PollFlaw> = fc.oneof(
  fc
    .constantFrom<ExchangeFields>(
      { scope: 'iam:disable-user iam:read-user' },
      { scope: 'iam:read-user' },
      { requested_ttl: 60 },
      { audience: 'https://graph.example.com' },
    )
    .map((change) => ({ kind: 'terms' as const, change })),
  fc
    .record({ name: fc.constantFrom('grant_type', 'subject_token_type', 'scope', 'task', 'audience'), value: junk })
    .map((flaw) => ({ kind: 'field' as const, ...flaw })),
  fc
    .oneof(
      junk,
      fc.uuid().map((id) => `${id}.demo-agent`),
      fc.constantFrom(...PROTOTYPE_NAMES).map((name) => `${crypto.randomUUID()}.${name}`),
    )
    .map((value) => ({ kind: 'approval_id' as const, value })),
  fc
    .constantFrom<Record<string, unknown>>(
      { aud: 'https://evil.example.com' },
      { iss: 'constructor', sub: 'constructor' },
      { exp: 1 },
    )
    .map((claims) => ({ kind: 'attestation' as const, claims })),
  contentType('application/json')
    .filter((type) => type?.split(';')[0]?.trim().toLowerCase() !== 'application/json')
    .map((type) => ({ kind: 'content_type' as const, type })),
  fc.constant<PollFlaw>({ kind: 'repeated' }),
);

/** The poll with its flaw, as a request (its own fresh attestation). */
async function flawedPoll(pending: Pending, flaw: PollFlaw): Promise<FuzzRequest> {
  const base = await exchangeFields({
    audience: 'https://iam.example.com',
    scope: 'iam:disable-user',
    task: pending.task,
    ...pending.extra,
    approval_id: pending.id,
  });
  const headers = { 'content-type': 'application/json' };
  switch (flaw.kind) {
    case 'terms':
      return { method: 'POST', path: '/token', headers, body: JSON.stringify({ ...base, ...flaw.change }) };
    case 'field':
      return { method: 'POST', path: '/token', headers, body: JSON.stringify({ ...base, [flaw.name]: flaw.value }) };
    case 'approval_id':
      return { method: 'POST', path: '/token', headers, body: JSON.stringify({ ...base, approval_id: flaw.value }) };
    case 'attestation': {
      const subject_token = await attestation({ claims: flaw.claims });
      return { method: 'POST', path: '/token', headers, body: JSON.stringify({ ...base, subject_token }) };
    }
    case 'content_type':
      return {
        method: 'POST',
        path: '/token',
        headers: flaw.type === undefined ? {} : { 'content-type': flaw.type },
        body: JSON.stringify(base),
      };
    case 'repeated':
      return {
        method: 'POST',
        path: '/token',
        headers,
        body: JSON.stringify(base).replace(
          '{',
          `{"approval_id":${JSON.stringify(`${crypto.randomUUID()}.demo-agent`)},`,
        ),
      };
  }
}

async function approvalStatus(id: string): Promise<string> {
  const response = await adminFetch(`/admin/approvals/${id}`, { headers: bearer(creds.approver) });
  expect(response.status).toBe(200);
  return ((await response.json()) as { status: string }).status;
}

describe('step-up approval under generated decisions and polls', () => {
  it(
    'is decided only by a valid decision, and collected once, by the one poll that asks for its terms',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(wrongDecision, { maxLength: 3 }),
          fc.array(pollFlaw, { minLength: 1, maxLength: 5 }),
          async (decisions, flaws) => {
            await ledger.begin();
            clock.advance(settings.approvals.pollInterval);
            const pending = await openApproval();
            for (const decision of decisions) {
              const request: FuzzRequest = {
                method: 'POST',
                path: `/admin/approvals/${pending.id}`,
                headers: { ...bearer(decision.credential), 'content-type': 'application/json' },
                body: JSON.stringify(decision.body),
              };
              const answer = await ledger.send(request, decision.credential.endsWith('.wrong') ? 'sampled' : 'one');
              checkAnswer(request, answer);
              expect(answer.status, answer.text).toBeGreaterThanOrEqual(400);
            }
            expect(await approvalStatus(pending.id)).toBe('pending');
            const approved = await adminFetch(`/admin/approvals/${pending.id}`, {
              method: 'POST',
              headers: bearer(creds.approver),
              body: { decision: 'approve', reason: 'the SOC confirmed the takeover' },
            });
            expect(approved.status, await approved.clone().text()).toBe(200);

            for (const flaw of flaws) {
              clock.advance(settings.approvals.pollInterval);
              const request = await flawedPoll(pending, flaw);
              const answer = await ledger.send(request, 'sampled');
              checkAnswer(request, answer);
              expect(answer.status, `${JSON.stringify(flaw)}: ${answer.text}`).not.toBe(200);
            }
            expect(await approvalStatus(pending.id)).toBe('approved');

            clock.advance(settings.approvals.pollInterval);
            const collected = await poll(pending);
            expect(collected.status, await collected.clone().text()).toBe(200);
            clock.advance(settings.approvals.pollInterval);
            const again = await poll(pending);
            expect((await again.json()) as unknown).toMatchObject({ error: 'invalid_grant' });
            await ledger.settle();
          },
        ),
        fuzzParameters(CI_RUNS, MS_PER_CASE),
      );
      ledger.report('step-up approval', fuzzRuns(CI_RUNS));
    },
    fuzzTimeout(CI_RUNS, MS_PER_CASE),
  );
});
