/**
 * The access review's suggested narrowing (issue 22), applied as an admin would: `git apply` on a copy of
 * `policies/`, then what `npm run policy:check` does (compile, run the policy tests), then the Cedar engine
 * over the result. A fleet that used every entitlement but one: the narrowing takes away exactly that one.
 */
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compilePolicyFolder } from '../../scripts/policy/compile';
import { runPolicyTests } from '../../scripts/policy/tests';
import type { UsageDaily } from '../../worker/audit/schema';
import { utcDay } from '../../worker/core/lifecycle';
import { authorize } from '../../worker/core/policy';
import type { PolicyBundle } from '../../worker/policy/bundle';
import { createPolicyEngine } from '../../worker/policy/engine';
import { type Entitlement, entitlements } from '../../worker/policy/entitlements';
import { accessReview } from '../../worker/policy/review';
import { PROJECT_ROOT } from './fixture';

const DAYS = 90;
const GRAPH = 'https://graph.example.com';
/** The one entitlement the fleet leaves unused: no policy test asks for it. */
const UNUSED = { agent: 'demo-agent', audience: GRAPH, action: 'graph:read' };

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tessera-review-'));
  await cp(join(PROJECT_ROOT, 'policies'), join(dir, 'policies'), { recursive: true });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function compiled(): Promise<PolicyBundle> {
  const { bundle, problems } = await compilePolicyFolder(join(dir, 'policies'));
  expect(problems).toEqual([]);
  if (bundle === undefined) throw new Error('the policy does not compile');
  return bundle;
}

const key = (agent: string, e: Pick<Entitlement, 'audience' | 'action'>) => `${agent} ${e.audience} ${e.action}`;

/** Every entitlement of every agent, keyed by agent, API and action. */
function matrix(bundle: PolicyBundle, nowMs: number): Map<string, Entitlement> {
  const engine = createPolicyEngine(cedar, bundle);
  return new Map(
    Object.values(bundle.agents).flatMap((agent) =>
      entitlements(engine, bundle, agent, nowMs).map((e) => [key(agent.id, e), e] as const),
    ),
  );
}

/** A token a day for each entitlement, in the window, but for {@link UNUSED}. */
function fleetUsage(before: Map<string, Entitlement>, nowMs: number): UsageDaily[] {
  return [...before.entries()]
    .filter(([k]) => k !== key(UNUSED.agent, UNUSED))
    .map(([k, e]) => ({
      day: utcDay(nowMs - 3 * 86_400_000),
      agent: k.split(' ')[0] as string,
      audience: e.audience,
      actions: e.action,
      outcome: 'granted' as const,
      reason: '',
      count: 2,
    }));
}

describe('the suggested narrowing', () => {
  it('passes policy:check once applied, and refuses exactly the unused action', async () => {
    const now = Date.now();
    const bundle = await compiled();
    const before = matrix(bundle, now);
    expect(before.has(key(UNUSED.agent, UNUSED))).toBe(true);
    const window = { days: DAYS, from: utcDay(now - (DAYS - 1) * 86_400_000), to: utcDay(now) };
    const review = accessReview(
      createPolicyEngine(cedar, bundle),
      bundle,
      fleetUsage(before, now),
      new Map(),
      window,
      now,
    );
    expect(review.agents.flatMap((a) => a.unused.map((u) => ({ agent: a.agent, ...u })))).toEqual([
      { ...UNUSED, condition: 'allowed' },
    ]);
    const narrowing = review.narrowing;
    expect(narrowing).toMatchObject({ file: `policies/review-${utcDay(now)}.cedar`, forbids: 1 });
    if (narrowing === null) return;

    // Applied as an admin would: the diff, with git.
    await writeFile(join(dir, 'narrowing.diff'), narrowing.diff);
    execFileSync('git', ['apply', 'narrowing.diff'], { cwd: dir });
    expect(await readFile(join(dir, narrowing.file), 'utf8')).toBe(narrowing.cedar);

    // npm run policy:check: it compiles, and every policy test still passes.
    const narrowed = await compiled();
    const tests = await runPolicyTests(join(dir, 'policies/tests'), narrowed);
    expect(tests.problems).toEqual([]);
    expect(tests.outcomes.filter((outcome) => outcome.failure !== undefined)).toEqual([]);

    // Exactly the unused entitlement is gone; every other one is as it was.
    const after = matrix(narrowed, now);
    const expected = new Map(before);
    expected.delete(key(UNUSED.agent, UNUSED));
    expect(after).toEqual(expected);
    const agent = narrowed.agents[UNUSED.agent];
    if (agent === undefined) throw new Error('the demo agent is not in the policy');
    expect(() =>
      authorize(createPolicyEngine(cedar, narrowed), narrowed, {
        agent,
        audience: GRAPH,
        actions: [UNUSED.action],
        requestedTtl: undefined,
        justification: true,
        approved: true,
        taskId: 'after-review',
        via: 'self',
        now: new Date(now),
      }),
    ).toThrow(expect.objectContaining({ reason: 'action_not_granted' }));
  });

  it('suggests nothing when every entitlement was used', async () => {
    const now = Date.now();
    const bundle = await compiled();
    const used = [...matrix(bundle, now).entries()].map(([k, e]) => ({
      day: utcDay(now),
      agent: k.split(' ')[0] as string,
      audience: e.audience,
      actions: e.action,
      outcome: 'granted' as const,
      reason: '',
      count: 1,
    }));
    const window = { days: DAYS, from: utcDay(now - (DAYS - 1) * 86_400_000), to: utcDay(now) };
    const review = accessReview(createPolicyEngine(cedar, bundle), bundle, used, new Map(), window, now);
    expect(review.narrowing).toBeNull();
    expect(review.stale).toEqual([]);
  });
});
