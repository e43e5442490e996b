import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AgentState } from '../../worker/agents/agent-state';
import { admissionCall, admit, agentObject } from '../helpers/agent-object';
import { nowSeconds } from '../helpers/clock';

/** The rest of an admit request: a task and a rate limit that does not get in the way. */
const rest = { taskId: 'task-1', rateLimit: { perMinute: 600, burst: 100 } };

async function rows(name: string): Promise<{ key: string; expires_at: number }[]> {
  return runInDurableObject(agentObject(name), (_instance: AgentState, state) =>
    state.storage.sql
      .exec<{ key: string; expires_at: number }>('SELECT key, expires_at FROM seen_attestations')
      .toArray(),
  );
}

afterEach(() => {
  vi.useRealTimers();
});

describe('AgentState.exchange: attestation replay protection', () => {
  it('admits an attestation once', async () => {
    const stub = agentObject('once');
    const request = { replayKey: 'issuer\njti-1', replayUntil: nowSeconds() + 300, ...rest };
    expect(await admit(stub, admissionCall(request))).toEqual({ outcome: 'granted' });
    expect(await admit(stub, admissionCall(request))).toEqual({
      outcome: 'refused',
      refusal: { reason: 'replayed' },
    });
    expect(await admit(stub, admissionCall({ ...request, replayKey: 'other-issuer\njti-1' }))).toEqual({
      outcome: 'granted',
    });
  });

  it('still refuses at the very second the attestation stops being acceptable, and for a margin after', async () => {
    const stub = agentObject('boundary');
    const replayUntil = nowSeconds();
    expect(await admit(stub, admissionCall({ replayKey: 'k', replayUntil, ...rest }))).toEqual({
      outcome: 'granted',
    });
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime((replayUntil + 59) * 1000);
    expect(await admit(stub, admissionCall({ replayKey: 'k', replayUntil, ...rest }))).toEqual({
      outcome: 'refused',
      refusal: { reason: 'replayed' },
    });
  });

  it('forgets attestations once they could no longer be accepted anyway', async () => {
    const name = 'cleanup';
    const stub = agentObject(name);
    await admit(stub, admissionCall({ replayKey: 'short', replayUntil: nowSeconds() + 10, ...rest }));
    await admit(stub, admissionCall({ replayKey: 'long', replayUntil: nowSeconds() + 3600, ...rest }));
    expect((await rows(name)).map((row) => row.key).sort()).toEqual(['long', 'short']);

    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime((nowSeconds() + 10 + 61) * 1000);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await rows(name)).map((row) => row.key)).toEqual(['long']);
  });
});
