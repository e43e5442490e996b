/**
 * Fuzzing the ends of a token's life: `POST /tasks/{id}/complete`, `POST /revoke` and `POST /introspect`,
 * with the tokens of a run presented every way: as issued, tampered with, in a non-canonical spelling, under
 * another scheme, for another task, and a DPoP-bound token with or without a proof of the call.
 *
 * Properties: a task is finished only by its own token, exactly as issued: an unbound one as `Bearer`, a
 * bound one as `DPoP` with a proof of the call signed by its key, never as `Bearer` (RFC 9449 §7.1); a token
 * is revoked only by its exact spelling, and a bound one only with a proof; introspection then says what the
 * model says, token by token; every answer is in the spec's shape; each decision audited once.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { flipChar } from '../helpers/attestation';
import { useForwardClock } from '../helpers/clock';
import { ISSUER } from '../helpers/demo';
import { type DpopKey, dpopKey, dpopProof } from '../helpers/dpop';
import { exchangeFields, postJson, TASK_DESCRIPTION } from '../helpers/requests';
import { introspect, sha256Base64url } from '../helpers/tokens';
import { authorizationJunk, junk, type Respelling, respell } from './arbitraries';
import { AuditLedger, checkAnswer, type FuzzRequest } from './oracles';
import { fuzzParameters, fuzzRuns, fuzzTimeout } from './params';

const CI_RUNS = 20;
/** About how long one run takes on a loaded machine: the property's time budget and timeout. */
const MS_PER_CASE = 1500;
const ledger = new AuditLedger();
/** Frozen, and moved on by each run: the three tokens a run is issued never meet the rate limit. */
const clock = useForwardClock();

interface Held {
  token: string;
  taskId: string;
  /** The DPoP key the token is bound to, if it is. */
  key: DpopKey | undefined;
  /** The model: finished by its task, or revoked by its own spelling. */
  dead: boolean;
}

/** Issues a token for a fresh task, bound to a new DPoP key or not. */
async function held(bound: boolean): Promise<Held> {
  const taskId = `fuzz-${crypto.randomUUID()}`;
  const key = bound ? await dpopKey() : undefined;
  const headers: Record<string, string> = key === undefined ? {} : { dpop: await dpopProof(key) };
  const response = await postJson(
    await exchangeFields({ task: { description: TASK_DESCRIPTION, id: taskId } }),
    headers,
  );
  expect(response.status, await response.clone().text()).toBe(200);
  const { access_token: token } = (await response.json()) as { access_token: string };
  return { token, taskId, key, dead: false };
}

/** How a token is spelt when presented: as issued, or a copy that must not count as it. */
type Spelling = 'exact' | 'flipped_signature' | Respelling | 'spaced' | 'lowercase';

function spell(token: string, spelling: Spelling): string {
  switch (spelling) {
    case 'exact':
      return token;
    case 'flipped_signature':
      return flipChar(token, token.length - 5);
    case 'padded':
    case 'trailing_bits':
      return respell(token, spelling);
    case 'spaced':
      return token.replace('.', '. ');
    case 'lowercase':
      return token.toLowerCase();
  }
}

const spelling = fc.oneof(
  { weight: 2, arbitrary: fc.constant<Spelling>('exact') },
  { weight: 1, arbitrary: fc.constantFrom<Spelling>('padded', 'trailing_bits') },
  { weight: 1, arbitrary: fc.constantFrom<Spelling>('flipped_signature', 'spaced', 'lowercase') },
);

type Act =
  | {
      kind: 'complete';
      holder: number;
      task: number | 'other';
      scheme: 'Bearer' | 'DPoP' | 'bearer';
      spelling: Spelling;
      /** A DPoP proof of the call, signed by the holder's key (a bound holder's; else a key of its own). */
      proof: boolean;
    }
  | { kind: 'complete_junk'; task: number; authorization: string }
  | { kind: 'revoke'; holder: number; spelling: Spelling; hint: unknown; proof: boolean }
  | { kind: 'revoke_junk'; token: unknown };

const act: fc.Arbitrary<Act> = fc.oneof(
  fc.record({
    kind: fc.constant('complete' as const),
    holder: fc.nat({ max: 2 }),
    task: fc.oneof(fc.nat({ max: 2 }), fc.constant('other' as const)),
    scheme: fc.constantFrom('Bearer' as const, 'DPoP' as const, 'bearer' as const),
    spelling,
    proof: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('complete_junk' as const),
    task: fc.nat({ max: 2 }),
    authorization: authorizationJunk,
  }),
  fc.record({
    kind: fc.constant('revoke' as const),
    holder: fc.nat({ max: 2 }),
    spelling,
    hint: fc.oneof(fc.constant(undefined), fc.constantFrom('access_token', 'refresh_token'), junk),
    proof: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('revoke_junk' as const), token: junk }),
);

/** The `DPoP` header of a call to `path` presenting `token`, signed by the holder's key (or a stranger's). */
async function proofHeader(holder: Held, path: string, token: string): Promise<Record<string, string>> {
  const key = holder.key ?? (await dpopKey());
  return { dpop: await dpopProof(key, { htu: `${ISSUER}${path}`, ath: await sha256Base64url(token) }) };
}

/** Sends one act, checks its answer, and returns the model's change: which tokens die. */
async function perform(step: Act, tokens: Held[]): Promise<void> {
  let request: FuzzRequest;
  let mayFinish: Held[] = [];
  switch (step.kind) {
    case 'complete': {
      const holder = tokens[step.holder] as Held;
      const taskId = step.task === 'other' ? 'fuzz-other-task' : (tokens[step.task] as Held).taskId;
      const path = `/tasks/${taskId}/complete`;
      const presented = spell(holder.token, step.spelling);
      request = {
        method: 'POST',
        path,
        headers: {
          authorization: `${step.scheme} ${presented}`,
          ...(step.proof && (await proofHeader(holder, path, presented))),
        },
      };
      // RFC 6750 §2.1: the scheme is case-insensitive; a bound token only as `DPoP`, with its proof (RFC 9449 §7.1).
      const scheme = step.scheme.toLowerCase();
      const authenticated = holder.key === undefined ? scheme === 'bearer' : scheme === 'dpop' && step.proof;
      if (step.spelling === 'exact' && holder.taskId === taskId && authenticated)
        mayFinish = tokens.filter((t) => t.taskId === taskId);
      break;
    }
    case 'complete_junk':
      request = {
        method: 'POST',
        path: `/tasks/${(tokens[step.task] as Held).taskId}/complete`,
        headers: { authorization: step.authorization },
      };
      break;
    case 'revoke': {
      const holder = tokens[step.holder] as Held;
      const presented = spell(holder.token, step.spelling);
      const form = new URLSearchParams({ token: presented });
      if (step.hint !== undefined)
        form.set('token_type_hint', typeof step.hint === 'string' ? step.hint : JSON.stringify(step.hint));
      request = {
        method: 'POST',
        path: '/revoke',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          ...(step.proof && (await proofHeader(holder, '/revoke', presented))),
        },
        body: form.toString(),
      };
      // A bound token is revoked only with a proof of the call signed by its key.
      if (step.spelling === 'exact' && (holder.key === undefined || step.proof)) mayFinish = [holder];
      break;
    }
    case 'revoke_junk':
      request = {
        method: 'POST',
        path: '/revoke',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token: step.token }),
      };
      break;
  }
  // A revoke of a token already dead may repeat an earlier revoke of it: sampled per token, in full or counted.
  const repeat = step.kind === 'revoke' && mayFinish.some((token) => token.dead);
  const answer = await ledger.send(request, mayFinish.length > 0 && !repeat ? 'one' : 'sampled');
  checkAnswer(request, answer);
  const what = `${JSON.stringify(step)} -> ${answer.status} ${answer.text.slice(0, 200)}`;
  if (step.kind === 'complete' || step.kind === 'complete_junk') {
    if (mayFinish.length === 0) expect(answer.status, `refused: ${what}`).toBeGreaterThanOrEqual(400);
    else expect(answer.status, what).toBe(200);
  } else if (step.kind === 'revoke') {
    // RFC 7009 §2.2: 200 whether or not the token was live (a body without a string token is 400); a bound
    // token without its proof is refused, 401 with a DPoP challenge.
    const unproven = step.spelling === 'exact' && tokens[step.holder]?.key !== undefined && !step.proof;
    expect(answer.status, what).toBe(unproven ? 401 : 200);
  }
  for (const token of mayFinish) token.dead = true;
}

describe('revocation, task completion and introspection under generated presentations', () => {
  it(
    'finish a task or revoke a token only for its exact token under its own scheme, as introspection then says',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(act, { minLength: 1, maxLength: 6 }), async (acts) => {
          await ledger.begin();
          clock.advance(10);
          const tokens = [await held(false), await held(true), await held(false)];
          for (const step of acts) await perform(step, tokens);
          for (const token of tokens) {
            const bound = token.key !== undefined;
            expect((await introspect(token.token)).active, `${token.taskId} bound=${bound}`).toBe(!token.dead);
          }
          await ledger.settle();
        }),
        fuzzParameters(CI_RUNS, MS_PER_CASE),
      );
      ledger.report('token lifecycle', fuzzRuns(CI_RUNS));
    },
    fuzzTimeout(CI_RUNS, MS_PER_CASE),
  );
});
