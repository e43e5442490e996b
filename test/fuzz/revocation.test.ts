/**
 * Fuzzing the ends of a token's life: `POST /tasks/{id}/complete`, `POST /revoke` and `POST /introspect`,
 * with the tokens of a run presented every way: as issued, tampered with, in a non-canonical spelling, under
 * another scheme, for another task, and a DPoP-bound token as a bearer token.
 *
 * Properties: a task is finished only by its own token, exactly as issued, sent as `Bearer` (docs/api.md:
 * the scheme `/tasks/{id}/complete` takes, bound token or not); a token is revoked only by its exact
 * spelling; introspection then says what the model says, token by token; every answer is in the spec's
 * shape; each decision audited once.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  dpopKey,
  dpopProof,
  exchangeFields,
  flipChar,
  introspect,
  postJson,
  TASK_DESCRIPTION,
  useForwardClock,
} from '../helpers';
import { authorizationJunk, junk, type Respelling, respell } from './arbitraries';
import { AuditLedger, checkAnswer, type FuzzRequest } from './oracles';
import { fuzzParameters, fuzzRuns, fuzzTimeout } from './params';

const CI_RUNS = 20;
const ledger = new AuditLedger();
/** Frozen, and moved on by each run: the three tokens a run is issued never meet the rate limit. */
const clock = useForwardClock();

interface Held {
  token: string;
  taskId: string;
  bound: boolean;
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
  return { token, taskId, bound, dead: false };
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
    }
  | { kind: 'complete_junk'; task: number; authorization: string }
  | { kind: 'revoke'; holder: number; spelling: Spelling; hint: unknown }
  | { kind: 'revoke_junk'; token: unknown };

const act: fc.Arbitrary<Act> = fc.oneof(
  fc.record({
    kind: fc.constant('complete' as const),
    holder: fc.nat({ max: 2 }),
    task: fc.oneof(fc.nat({ max: 2 }), fc.constant('other' as const)),
    scheme: fc.constantFrom('Bearer' as const, 'DPoP' as const, 'bearer' as const),
    spelling,
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
  }),
  fc.record({ kind: fc.constant('revoke_junk' as const), token: junk }),
);

/** Sends one act, checks its answer, and returns the model's change: which tokens die. */
async function perform(step: Act, tokens: Held[]): Promise<void> {
  let request: FuzzRequest;
  let mayFinish: Held[] = [];
  switch (step.kind) {
    case 'complete': {
      const holder = tokens[step.holder] as Held;
      const taskId = step.task === 'other' ? 'fuzz-other-task' : (tokens[step.task] as Held).taskId;
      request = {
        method: 'POST',
        path: `/tasks/${taskId}/complete`,
        headers: { authorization: `${step.scheme} ${spell(holder.token, step.spelling)}` },
      };
      // RFC 6750 §2.1: the scheme is case-insensitive; `DPoP` is not one this endpoint takes.
      if (step.spelling === 'exact' && holder.taskId === taskId && step.scheme.toLowerCase() === 'bearer')
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
      const form = new URLSearchParams({ token: spell(holder.token, step.spelling) });
      if (step.hint !== undefined)
        form.set('token_type_hint', typeof step.hint === 'string' ? step.hint : JSON.stringify(step.hint));
      request = {
        method: 'POST',
        path: '/revoke',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      };
      if (step.spelling === 'exact') mayFinish = [holder];
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
  const answer = await ledger.send(request, mayFinish.length > 0 ? 'one' : 'sampled');
  checkAnswer(request, answer);
  const what = `${JSON.stringify(step)} -> ${answer.status} ${answer.text.slice(0, 200)}`;
  if (step.kind === 'complete' || step.kind === 'complete_junk') {
    if (mayFinish.length === 0) expect(answer.status, `refused: ${what}`).toBeGreaterThanOrEqual(400);
    else expect(answer.status, what).toBe(200);
  } else if (step.kind === 'revoke') {
    // RFC 7009 §2.2: 200 whether or not the token was live (a body without a string token is 400).
    expect(answer.status, what).toBe(200);
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
            expect((await introspect(token.token)).active, `${token.taskId} bound=${token.bound}`).toBe(!token.dead);
          }
          await ledger.settle();
        }),
        fuzzParameters(CI_RUNS),
      );
      ledger.report('token lifecycle', fuzzRuns(CI_RUNS));
    },
    fuzzTimeout(CI_RUNS, 1500),
  );
});
