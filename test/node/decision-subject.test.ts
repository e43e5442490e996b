/**
 * Decisions shared between agents (worker/policy/engine.ts `decisionSubject`): Cedar reads an agent's id only
 * where a policy names it, and its owner and labels only where a policy reads them, so the engine reuses one
 * decision for agents alike in those, and the access review asks about each such class once. Checked over
 * the demo policies plus a file that names agents and reads the owner: the remembering engine answers every
 * query exactly as Cedar does afresh, and a review of many alike agents asks Cedar no more than of one.
 */
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compilePolicyFolder } from '../../scripts/policy/compile';
import { utcDay } from '../../worker/core/lifecycle';
import type { CedarAnswer, CedarQuery } from '../../worker/core/policy';
import type { Agent, PolicyBundle } from '../../worker/policy/bundle';
import { type CedarModule, createPolicyEngine } from '../../worker/policy/engine';
import { entitlements } from '../../worker/policy/entitlements';
import { accessReview } from '../../worker/policy/review';
import { PROJECT_ROOT } from './fixture';

const GRAPH = 'https://graph.example.com';
const TICKETS = 'https://tickets.example.com';

/** Policies that tell agents apart by id and by owner, beside the demo's (which read labels only). */
const EXTRA = `
@id("security-team-graph")
permit (principal, action == Action::"graph:read", resource == Api::"${GRAPH}")
when { principal.owner like "*@security.example.com" };

@id("ci-graph-attack-path")
permit (principal, action == Action::"graph:attack-path", resource == Api::"${GRAPH}")
when { context.attestation == "github-actions" };

@id("twin-b-no-tickets")
forbid (principal, action == Action::"tickets:read", resource == Api::"${TICKETS}")
when { principal in [Agent::"twin-b", Agent::"twin-c"] };
`;

let dir: string;
let bundle: PolicyBundle;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tessera-subject-'));
  await cp(join(PROJECT_ROOT, 'policies'), dir, { recursive: true });
  await writeFile(join(dir, 'subjects.cedar'), EXTRA);
  const compiled = await compilePolicyFolder(dir);
  expect(compiled.problems).toEqual([]);
  if (compiled.bundle === undefined) throw new Error('the policy does not compile');
  bundle = compiled.bundle;
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An agent like the demo agent (or like the release bot, attested by GitHub Actions), another id, owner, labels. */
function agentLike(id: string, owner: string, labels: string[], like = 'demo-agent'): Agent {
  const model = bundle.agents[like];
  if (model === undefined) throw new Error(`no ${like} in the policies`);
  return { ...model, id, owner, labels };
}

/** The Cedar module, counting the decisions asked of it. */
function countingCedar(): { module: CedarModule; calls: () => number } {
  let calls = 0;
  return {
    module: {
      preparsePolicySet: cedar.preparsePolicySet,
      preparseSchema: cedar.preparseSchema,
      statefulIsAuthorized: (call) => {
        calls += 1;
        return cedar.statefulIsAuthorized(call);
      },
    },
    calls: () => calls,
  };
}

describe('what policies name and read, as the compiler finds it', () => {
  it('lists the agents they name and the attributes they read', () => {
    expect(bundle.cedar.named.ids).toEqual(expect.arrayContaining(['release-bot', 'twin-b', 'twin-c']));
    expect(bundle.cedar.named.ids).not.toContain('demo-agent');
    expect(bundle.cedar.named.attributes).toEqual(expect.arrayContaining(['labels', 'owner']));
  });
});

describe('the remembering engine over agents alike', () => {
  const ids = ['twin-a', 'twin-b', 'twin-c', 'twin-d', 'release-bot'];
  const owners = ['ops@example.com', 'ana@security.example.com', 'bo@security.example.com'];
  const labels = ['support', 'security', 'release'];
  const query = fc.record({
    agent: fc
      .tuple(fc.constantFrom(...ids), fc.constantFrom(...owners), fc.subarray(labels))
      .map(([id, owner, set]) => agentLike(id, owner, set)),
    action: fc.constantFrom('graph:read', 'tickets:read', 'tickets:close', 'iam:disable-user'),
    audience: fc.constantFrom(GRAPH, TICKETS, 'https://iam.example.com'),
    context: fc.record({
      task_id: fc.constant('task-1'),
      justification_present: fc.boolean(),
      approved: fc.boolean(),
      requested_ttl: fc.constant(300),
      now: fc.constant(Math.floor(Date.now() / 1000)),
      hour_utc: fc.integer({ min: 0, max: 23 }),
      weekday_utc: fc.integer({ min: 0, max: 6 }),
      attestation: fc.constantFrom('self', 'github-actions'),
    }),
  });

  /** A query, then the same for an agent that differs in one thing only, which may or may not matter. */
  const pair = fc
    .tuple(query, fc.constantFrom(...ids), fc.constantFrom(...owners), fc.subarray(labels))
    .chain(([asked, id, owner, set]) =>
      fc.tuple(
        fc.constant(asked),
        fc.constantFrom(
          { ...asked, agent: { ...asked.agent, id } },
          { ...asked, agent: { ...asked.agent, owner } },
          { ...asked, agent: { ...asked.agent, labels: set } },
          { ...asked, agent: { ...asked.agent, labels: [...asked.agent.labels].reverse().concat(asked.agent.labels) } },
        ),
      ),
    );

  it('answers every query exactly as Cedar does afresh', () => {
    const { contextKeys: _all, ...cedarPart } = bundle.cedar;
    // Without the attributes policies read, the engine remembers nothing: each answer is Cedar's own.
    const fresh = createPolicyEngine(cedar, { ...bundle, cedar: cedarPart });
    fc.assert(
      fc.property(fc.array(pair, { minLength: 1, maxLength: 20 }), (pairs) => {
        const queries: CedarQuery[] = pairs.flat();
        const remembering = createPolicyEngine(cedar, bundle);
        // The policies that decided, as a set: Cedar names them in no set order.
        const answer = ({ allow, policies }: CedarAnswer) => ({ allow, policies: [...policies].sort() });
        for (const asked of queries) expect(answer(remembering.evaluate(asked))).toEqual(answer(fresh.evaluate(asked)));
      }),
      { numRuns: 60 },
    );
  });

  it('asks Cedar once for agents no policy names, alike in owner and labels, and again where one differs', () => {
    const { module, calls } = countingCedar();
    const engine = createPolicyEngine(module, bundle);
    const context = {
      task_id: 't',
      justification_present: false,
      approved: false,
      requested_ttl: 300,
      now: 0,
      hour_utc: 10,
      weekday_utc: 3,
      attestation: 'self',
    };
    const ask = (agent: Agent) => engine.evaluate({ agent, action: 'tickets:read', audience: TICKETS, context });
    expect(ask(agentLike('twin-a', 'ops@example.com', ['support'])).allow).toBe(true);
    expect(ask(agentLike('twin-d', 'ops@example.com', ['support'])).allow).toBe(true);
    expect(ask(agentLike('twin-e', 'ops@example.com', ['support', 'support'])).allow).toBe(true);
    expect(calls()).toBe(1);
    // Named by a policy: its own decision, and here another answer.
    expect(ask(agentLike('twin-b', 'ops@example.com', ['support'])).allow).toBe(false);
    expect(calls()).toBe(2);
    // The owner is read by a policy, the labels too.
    ask(agentLike('twin-a', 'ana@security.example.com', ['support']));
    ask(agentLike('twin-a', 'ops@example.com', ['security']));
    expect(calls()).toBe(4);
  });
});

describe('the access review of a fleet of agents alike', () => {
  it('asks Cedar as often for 400 agents as for one of each kind, and finds what it finds per agent', () => {
    const kinds = [
      (n: number) => agentLike(`support-${n}`, 'ops@example.com', ['support']),
      (n: number) => agentLike(`security-${n}`, 'sec@security.example.com', ['security']),
      (n: number) => agentLike(`plain-${n}`, 'ops@example.com', []),
      (n: number) => agentLike(`ci-${n}`, 'ops@example.com', [], 'release-bot'),
    ];
    const fleet = (perKind: number) => ({
      ...bundle,
      agents: Object.fromEntries(
        kinds.flatMap((kind) => Array.from({ length: perKind }, (_, n) => kind(n))).map((a) => [a.id, a]),
      ),
    });
    const nowMs = Date.now();
    const window = { days: 90, from: utcDay(nowMs - 89 * 86_400_000), to: utcDay(nowMs) };
    const review = (of: PolicyBundle) => {
      const { module, calls } = countingCedar();
      const result = accessReview(createPolicyEngine(module, of), of, [], new Map(), window, nowMs);
      return { result, calls: calls() };
    };
    const one = review(fleet(1));
    const many = review(fleet(100));
    expect(many.result.agents).toHaveLength(400);
    expect(many.calls).toBe(one.calls);
    // Each agent's entitlements are those the engine finds for it alone.
    const alone = createPolicyEngine(cedar, bundle);
    for (const reviewed of many.result.agents.filter((_, i) => i % 37 === 0)) {
      const agent = fleet(100).agents[reviewed.agent] as Agent;
      expect(reviewed.entitlements.map(({ granted: _g, used: _u, ...e }) => e)).toEqual(
        entitlements(alone, bundle, agent, nowMs),
      );
    }
    const entitled = (agent: string, action: string) =>
      many.result.agents.find((a) => a.agent === agent)?.entitlements.some((e) => e.action === action);
    expect(entitled('security-7', 'graph:read')).toBe(true);
    expect(entitled('plain-7', 'graph:attack-path')).toBe(false);
    expect(entitled('ci-7', 'graph:attack-path')).toBe(true);
  });
});
