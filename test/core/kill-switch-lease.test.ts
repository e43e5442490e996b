/**
 * The isolate's lease on the kill switch (`KillSwitchLease`), on a clock the test moves and a shard it
 * answers for: when a request waits for the shard, when the lease is renewed behind it, and that a request
 * never acts on a lease with less than the agent's deadline left.
 */
import { describe, expect, it } from 'vitest';
import { type KillSwitchState, RELEASED } from '../../worker/control/kill-switch';
import { KillSwitchLease } from '../../worker/stores/kill-switch';
import { expectConsole } from '../helpers/console';

const LEASE_MS = 5000;
const KEEP_MS = 3000;
const ENGAGED: KillSwitchState = { engaged: true, version: 2, reason: 'drill', by: 'demo-admin', at: 1 };

/** A shard whose answers the test releases one at a time, and a clock it sets. */
function setup() {
  const clock = { now: 0 };
  const asked: { resolve: (state: KillSwitchState) => void; reject: (error: Error) => void }[] = [];
  const background: Promise<unknown>[] = [];
  const lease = new KillSwitchLease({
    leaseMs: LEASE_MS,
    keepMs: KEEP_MS,
    now: () => clock.now,
    read: () => new Promise((resolve, reject) => asked.push({ resolve, reject })),
  });
  const current = () => lease.current((work) => background.push(work));
  /** Answers the oldest question the shard has not answered yet. */
  const answer = async (state: KillSwitchState = RELEASED) => {
    asked.shift()?.resolve(state);
    await Promise.all(background);
  };
  return { clock, asked, background, lease, current, answer };
}

describe('KillSwitchLease: the kill switch as an isolate holds it', () => {
  it('asks the shard for the first request, and says how long the request waited', async () => {
    const { clock, asked, current } = setup();
    const first = current();
    expect(asked).toHaveLength(1);
    clock.now = 2;
    asked[0]?.resolve(RELEASED);
    const { lease, roundTripMs } = await first;
    expect(lease).toMatchObject({ engaged: false, until: LEASE_MS });
    expect(roundTripMs).toBe(2);
  });

  it('answers from the lease held while more than the deadline is left, without asking', async () => {
    const { clock, asked, current, answer, background } = setup();
    const first = current();
    await answer();
    await first;
    clock.now = LEASE_MS - KEEP_MS - LEASE_MS * 0.1 - 1;
    const { roundTripMs } = await current();
    expect(roundTripMs).toBeUndefined();
    expect(asked).toHaveLength(0);
    expect(background).toHaveLength(0);
  });

  it('renews a lease running low behind the request, once however many requests come meanwhile', async () => {
    const { clock, asked, current, answer, background } = setup();
    const first = current();
    await answer();
    const { lease: old } = await first;
    clock.now = LEASE_MS - KEEP_MS - 100;
    const [a, b] = await Promise.all([current(), current()]);
    expect(a).toEqual({ lease: old });
    expect(b).toEqual({ lease: old });
    expect(asked).toHaveLength(1);
    expect(background).toHaveLength(1);
    await answer(ENGAGED);
    const { lease, roundTripMs } = await current();
    expect(roundTripMs).toBeUndefined();
    expect(lease).toMatchObject({ engaged: true, until: clock.now + LEASE_MS });
  });

  it('makes the request wait for the shard once the lease has no more than the deadline left', async () => {
    const { clock, asked, current, answer } = setup();
    const first = current();
    await answer();
    await first;
    clock.now = LEASE_MS - KEEP_MS;
    const renewing = current();
    expect(asked).toHaveLength(1);
    await answer(ENGAGED);
    expect(await renewing).toMatchObject({ lease: { engaged: true }, roundTripMs: 0 });
  });

  it('keeps the lease held when a background renewal fails, and fails closed once it is too short', async () => {
    const { clock, asked, current, background } = setup();
    const first = current();
    asked.shift()?.resolve(RELEASED);
    const { lease: old } = await first;
    clock.now = LEASE_MS - KEEP_MS - 100;
    expect(await current()).toEqual({ lease: old });
    const logged = expectConsole('error');
    asked.shift()?.reject(new Error('shard down'));
    await Promise.all(background);
    expect(logged).toHaveBeenCalledExactlyOnceWith(
      'kill switch lease: background renewal failed',
      expect.objectContaining({ reason: 'store_unavailable' }),
    );
    clock.now = LEASE_MS - KEEP_MS;
    const refused = current();
    asked.shift()?.reject(new Error('shard down'));
    await expect(refused).rejects.toMatchObject({ reason: 'store_unavailable' });
  });

  it('keeps the newer lease when an older renewal answers last', async () => {
    const { clock, asked, current, background } = setup();
    const first = current();
    asked.shift()?.resolve(RELEASED);
    await first;
    clock.now = LEASE_MS - KEEP_MS - 100;
    await current();
    const [slow] = asked.splice(0, 1);
    clock.now = LEASE_MS - KEEP_MS;
    const waited = current();
    asked.shift()?.resolve(ENGAGED);
    const { lease: newer } = await waited;
    slow?.resolve(RELEASED);
    await Promise.all(background);
    clock.now += 1;
    expect((await current()).lease).toBe(newer);
  });
});
