/** The agents' Durable Objects, called directly: their stubs, eviction, and exchanges made without the worker. */
import { evictDurableObject, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { expect } from 'vitest';
import type { AgentState } from '../../worker/agents/agent-state';
import type { AuditDraft } from '../../worker/audit/record';
import type { Admission, ExchangeCall, ExchangeDecision, ExchangeResult } from '../../worker/core/exchange';
import { nowSeconds } from './clock';
import { DEMO_AGENT } from './demo';

/** The stub of an agent's Durable Object (the demo agent's by default). */
export const agentObject = (name: string = DEMO_AGENT) => env.AGENT_STATE.get(env.AGENT_STATE.idFromName(name));

/** Evicts an agent's object (woken first) and checks a new instance follows: a full rate-limit bucket, same storage. */
export async function evictAgentObject(name: string = DEMO_AGENT): Promise<void> {
  const stub = agentObject(name);
  const instances = new WeakSet<object>();
  await runInDurableObject(stub, (instance: AgentState) => {
    instances.add(instance);
  });
  await evictDurableObject(stub);
  let recreated = false;
  await runInDurableObject(stub, (instance: AgentState) => {
    recreated = !instances.has(instance);
  });
  expect(recreated).toBe(true);
}

/** A record draft for calls made to an object directly (the worker would have built it from the request). */
export function testDraft(event = 'token.exchange', agent: string = DEMO_AGENT): AuditDraft {
  return { at: Date.now(), event, agent, details: {} };
}

/**
 * A `/token` request as the agent's object receives it, for tests that call the object directly: the
 * admission, and by default a grant of a token that exists only in this call.
 */
export function admissionCall(admission: Admission, decision?: ExchangeDecision, agent = DEMO_AGENT): ExchangeCall {
  return {
    draft: testDraft('token.exchange', agent),
    admission,
    decision: decision ?? {
      kind: 'grant',
      grant: {
        tokenJti: crypto.randomUUID(),
        tokenExp: nowSeconds() + 300,
        grantedActions: 'tickets:read',
        details: {},
      },
    },
  };
}

/**
 * What an agent's object answers an exchange, without the records it hands back for the worker to send (a
 * test that calls the object itself sends none: the object's own flush does, as `drainAudit` asks it).
 */
export async function admit(stub: DurableObjectStub<AgentState>, call: ExchangeCall): Promise<ExchangeResult> {
  const { records: _handedBack, ...result } = await stub.exchange(call);
  return result;
}
