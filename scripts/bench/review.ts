/**
 * The access review's figures for `npm run bench`: `GET /admin/review` of the bench fleet on the broker, and
 * what one kind of agent costs it. The review asks the Cedar engine about each kind of agent once (agents
 * alike in all a decision can read: `entitlementClass` in worker/policy/entitlements.ts), so its cost grows
 * with the kinds, not the agents: a fleet whose every agent is a kind of its own costs `kinds × perKindMs`.
 */
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { createPolicyEngine } from '../../worker/policy/engine';
import { entitlementClass, entitlements } from '../../worker/policy/entitlements';
import type { LocalBroker } from '../lib/local-broker';
import { compilePolicies } from '../policy/compile';

export interface ReviewFigures {
  agents: number;
  /** Kinds of agents the review asks the engine about, each once. */
  kinds: number;
  /** `GET /admin/review?days=90` on the broker, the median of {@link ROUNDS} answers, in ms. */
  brokerMs: number;
  /** One kind's entitlements worked out by a fresh engine in this process (Node, the same Cedar), in ms. */
  perKindMs: number;
}

/** Reviews timed on the broker, the first one included: a review is read on demand, not polled. */
const ROUNDS = 3;

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

/**
 * The review of the fleet of `policyDir` on `broker`, and the cost of one kind of agent.
 *
 * @throws {Error} when the broker does not answer a review with 200.
 */
export async function reviewFigures(
  broker: LocalBroker,
  credential: string,
  policyDir: string,
): Promise<ReviewFigures> {
  const bundle = await compilePolicies(policyDir);
  const agents = Object.values(bundle.agents);
  const kinds = new Map(agents.map((agent) => [entitlementClass(bundle, agent), agent]));
  const perKind = [...kinds.values()].map((agent) => {
    const engine = createPolicyEngine(cedar, bundle);
    const started = performance.now();
    entitlements(engine, bundle, agent, Date.now());
    return performance.now() - started;
  });
  const served: number[] = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    const started = performance.now();
    const response = await fetch(`${broker.url}/admin/review?days=90`, {
      headers: { authorization: `Bearer ${credential}` },
    });
    const body = await response.text();
    if (response.status !== 200) throw new Error(`GET /admin/review answered ${response.status}: ${body}`);
    served.push(performance.now() - started);
  }
  return { agents: agents.length, kinds: kinds.size, brokerMs: median(served), perKindMs: median(perKind) };
}
