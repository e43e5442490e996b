/**
 * The Cedar engine's decision memory: a decision is reused only for a query that agrees on everything a
 * policy can read (the agent, action, audience and the context attributes the policies name).
 */
import * as cedar from '@cedar-policy/cedar-wasm/web';
import { describe, expect, it } from 'vitest';
import type { CedarQuery, TaskContext } from '../../worker/core/policy';
import type { PolicyBundle } from '../../worker/policy/bundle';
import { createPolicyEngine } from '../../worker/policy/engine';
import { loadedPolicy } from '../../worker/policy/loaded';

const { bundle: demo } = loadedPolicy();

/** The engine over the demo bundle, counting the evaluations that reach Cedar. */
function countingEngine(bundle: PolicyBundle = demo) {
  const counted = { calls: 0 };
  const engine = createPolicyEngine(
    {
      preparsePolicySet: cedar.preparsePolicySet,
      preparseSchema: cedar.preparseSchema,
      statefulIsAuthorized: (call) => {
        counted.calls += 1;
        return cedar.statefulIsAuthorized(call);
      },
    },
    bundle,
  );
  return { engine, counted };
}

function context(overrides: Partial<TaskContext> = {}): TaskContext {
  return {
    task_id: 'task-1',
    justification_present: false,
    approved: false,
    requested_ttl: 300,
    now: Math.floor(Date.now() / 1000),
    hour_utc: 10,
    weekday_utc: 3,
    attestation: 'self',
    ...overrides,
  };
}

function query(overrides: Partial<TaskContext> = {}, action = 'tickets:close'): CedarQuery {
  const agent = demo.agents['demo-agent'];
  if (agent === undefined) throw new Error('no demo-agent in the demo bundle');
  return { agent, action, audience: 'https://tickets.example.com', context: context(overrides) };
}

describe('the policy engine: reusing decisions', () => {
  it('knows which context attributes the demo policies read', () => {
    expect(demo.cedar.contextKeys).toEqual([
      'approved',
      'attestation',
      'hour_utc',
      'justification_present',
      'weekday_utc',
    ]);
  });

  it('reuses a decision for a query that differs only in attributes no policy reads', () => {
    const { engine, counted } = countingEngine();
    const first = engine.evaluate(query());
    const second = engine.evaluate(query({ task_id: 'task-2', now: 1_780_000_999, requested_ttl: 60 }));
    expect(second).toEqual(first);
    expect(counted.calls).toBe(1);
  });

  it('evaluates again when an attribute a policy reads changes, and gets its own answer', () => {
    const { engine, counted } = countingEngine();
    expect(engine.evaluate(query({ hour_utc: 10 })).allow).toBe(true);
    expect(engine.evaluate(query({ hour_utc: 19 })).allow).toBe(false);
    expect(engine.evaluate(query({ weekday_utc: 0 })).allow).toBe(false);
    expect(counted.calls).toBe(3);
  });

  it('evaluates again for another action, audience or agent', () => {
    const { engine, counted } = countingEngine();
    engine.evaluate(query());
    engine.evaluate(query({}, 'tickets:read'));
    engine.evaluate({ ...query(), audience: 'https://graph.example.com' });
    const other = demo.agents['release-bot'];
    if (other === undefined) throw new Error('no release-bot in the demo bundle');
    expect(engine.evaluate({ ...query(), agent: other }).allow).toBe(false);
    expect(counted.calls).toBe(4);
  });

  it('remembers nothing when the bundle does not say which attributes policies read', () => {
    const { contextKeys: _unknown, ...cedarPart } = demo.cedar;
    const { engine, counted } = countingEngine({ ...demo, cedar: cedarPart });
    engine.evaluate(query());
    engine.evaluate(query());
    expect(counted.calls).toBe(2);
  });
});
