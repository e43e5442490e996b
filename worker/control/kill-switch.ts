/**
 * The global kill switch, spread over {@link KILL_SWITCH_SHARDS} shard objects so that no single Durable
 * Object is asked by every isolate.
 *
 * One control object (`global`) serialises admin changes and records each in its own audit chain, in the
 * same transaction as the change. A change gets the next version number and is written to every shard before
 * the control object answers; a shard keeps only the newest version it has seen.
 *
 * Isolates do not ask a shard on every request: each holds a lease on what its shard said, for
 * `KILL_SWITCH_LEASE_MS`, and asks again before the lease runs out (`worker/stores/kill-switch.ts`). So a
 * change answers only once every shard holds it *and* every lease taken before it has run out: after an
 * engage has answered, no isolate issues a token. See docs/revocation.md for the numbers.
 */
import { AuditedObject } from '../audit/audited-object';
import { type AuditDraft, decideRecord } from '../audit/record';
import { MeteredObject } from '../durable/meter';
import { loadedPolicy } from '../policy/loaded';

/** Shards of the kill switch. Changing it is safe only while the switch is released. */
export const KILL_SWITCH_SHARDS = 128;
/** Added to the lease an engage waits out: clocks of isolates and of this object differ by less. */
export const LEASE_CLOCK_MARGIN_MS = 250;

export interface KillSwitchState {
  engaged: boolean;
  /** Increases with every change; 0 = never set. */
  version: number;
  reason: string | null;
  by: string | null;
  /** Epoch seconds of the change. */
  at: number | null;
}

export const RELEASED: KillSwitchState = { engaged: false, version: 0, reason: null, by: null, at: null };

const STATE_KEY = 'state';

/** The lease length from `KILL_SWITCH_LEASE_MS`; a value that is not 100..60000 ms stops the worker. */
export function killSwitchLeaseMs(env: Env): number {
  const ms = Number(env.KILL_SWITCH_LEASE_MS);
  if (!Number.isInteger(ms) || ms < 100 || ms > 60_000) {
    throw new Error('KILL_SWITCH_LEASE_MS must be a whole number of milliseconds from 100 to 60000');
  }
  return ms;
}

/** The stub of shard `shard` (0 … {@link KILL_SWITCH_SHARDS} - 1): what isolates read and the control writes. */
export function shardStub(env: Env, shard: number): DurableObjectStub<KillSwitchShard> {
  return env.KILL_SWITCH_SHARDS.get(env.KILL_SWITCH_SHARDS.idFromName(`shard-${shard}`));
}

/** One shard: answers from memory; writes are durable before they are acknowledged. */
export class KillSwitchShard extends MeteredObject {
  #state: KillSwitchState = RELEASED;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void this.ctx.blockConcurrencyWhile(async () => {
      this.#state = (await this.ctx.storage.get<KillSwitchState>(STATE_KEY)) ?? RELEASED;
    });
  }

  async state(): Promise<KillSwitchState> {
    return this.#state;
  }

  /** Stores `state` if it is newer than what the shard holds; returns what the shard now holds. */
  async apply(state: KillSwitchState): Promise<KillSwitchState> {
    if (state.version > this.#state.version) {
      await this.ctx.storage.put(STATE_KEY, state);
      this.#state = state;
    }
    return this.#state;
  }
}

export interface KillSwitchReport extends KillSwitchState {
  /** How many shards hold the current version: all of them once a change has answered. */
  shards: { total: number; current: number };
}

/** The control object: the authoritative state, the fan-out of every change to all shards, its audit chain. */
export class KillSwitchControl extends AuditedObject {
  #state: KillSwitchState = RELEASED;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, { chain: 'kill-switch' });
    void this.ctx.blockConcurrencyWhile(async () => {
      this.#state = (await this.ctx.storage.get<KillSwitchState>(STATE_KEY)) ?? RELEASED;
    });
  }

  async #fanOut(state: KillSwitchState): Promise<number> {
    const shards = Array.from({ length: KILL_SWITCH_SHARDS }, (_, shard) => shardStub(this.env, shard).apply(state));
    const results = await Promise.allSettled(shards);
    return results.filter((r) => r.status === 'fulfilled' && r.value.version === state.version).length;
  }

  /**
   * Engages or releases the switch, recording the change with it. Answers only when every shard holds the
   * change and every isolate's lease on the previous state has run out.
   *
   * @throws {Error} when a shard could not be written: the change is stored and partly applied (shards
   *   that took an engage are engaged), and repeating the same call completes it.
   */
  async set(change: { engaged: boolean; reason: string; by: string }, draft: AuditDraft): Promise<KillSwitchReport> {
    // Changes are serialised: two admins flipping at once get versions in the order they arrive.
    const report = await this.ctx.blockConcurrencyWhile(async () => {
      const state: KillSwitchState = {
        ...change,
        version: this.#state.version + 1,
        at: Math.floor(Date.now() / 1000),
      };
      this.outbox.append(
        decideRecord(
          {
            ...draft,
            details: { ...draft.details, engaged: change.engaged, version: state.version, shards: KILL_SWITCH_SHARDS },
          },
          { decision: 'granted' },
          loadedPolicy().bundle.version,
        ),
      );
      await this.ctx.storage.put(STATE_KEY, state);
      this.#state = state;
      const current = await this.#fanOut(state);
      if (current < KILL_SWITCH_SHARDS) {
        throw new Error(`kill switch v${state.version} reached ${current} of ${KILL_SWITCH_SHARDS} shards`);
      }
      return { ...state, shards: { total: KILL_SWITCH_SHARDS, current } };
    });
    await this.schedule();
    // A lease an isolate took on the old state before the last shard changed may still be running: wait it
    // out, so that once this answers every isolate acts on the new state (no token after an engage; tokens
    // again after a release).
    await scheduler.wait(killSwitchLeaseMs(this.env) + LEASE_CLOCK_MARGIN_MS);
    return report;
  }

  /**
   * The authoritative state and how many shards hold it; with `draft`, the read is recorded, sampled per
   * admin: a console polls it.
   */
  async report(draft?: AuditDraft): Promise<KillSwitchReport> {
    const states = await Promise.allSettled(
      Array.from({ length: KILL_SWITCH_SHARDS }, (_, shard) => shardStub(this.env, shard).state()),
    );
    const current = states.filter((r) => r.status === 'fulfilled' && r.value.version === this.#state.version).length;
    if (draft !== undefined) {
      this.sampler.take('admin_read', decideRecord(draft, { decision: 'granted' }, loadedPolicy().bundle.version));
      await this.schedule();
    }
    return { ...this.#state, shards: { total: KILL_SWITCH_SHARDS, current } };
  }
}
