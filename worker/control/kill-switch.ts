/**
 * The global kill switch, spread over {@link KILL_SWITCH_SHARDS} shard objects so that no single Durable
 * Object sits on every `/token` request: an agent's requests read only the shard its id hashes to.
 *
 * One control object (`global`) serialises admin changes. A change gets the next version number and is
 * written to every shard before the control object answers; a shard keeps only the newest version it has
 * seen. So once an engage has answered, every shard is engaged, and every later `/token` refuses.
 * See docs/architecture.md for the numbers.
 */
import { DurableObject } from 'cloudflare:workers';

/** Shards of the kill switch. Changing it is safe only while the switch is released. */
export const KILL_SWITCH_SHARDS = 128;

export interface KillSwitchState {
  engaged: boolean;
  /** Increases with every change; 0 = never set. */
  version: number;
  reason: string | null;
  by: string | null;
  /** Epoch seconds of the change. */
  at: number | null;
}

const RELEASED: KillSwitchState = { engaged: false, version: 0, reason: null, by: null, at: null };

const STATE_KEY = 'state';

/** FNV-1a: a stable, well-spread hash of an agent id onto a shard. */
export function shardOf(agentId: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < agentId.length; i += 1) {
    hash ^= agentId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % KILL_SWITCH_SHARDS;
}

export function shardStub(env: Env, shard: number): DurableObjectStub<KillSwitchShard> {
  return env.KILL_SWITCH_SHARDS.get(env.KILL_SWITCH_SHARDS.idFromName(`shard-${shard}`));
}

/** One shard: answers from memory; writes are durable before they are acknowledged. */
export class KillSwitchShard extends DurableObject<Env> {
  #state: KillSwitchState = RELEASED;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.#state = (await ctx.storage.get<KillSwitchState>(STATE_KEY)) ?? RELEASED;
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

/** The control object: the authoritative state, and the fan-out of every change to all shards. */
export class KillSwitchControl extends DurableObject<Env> {
  #state: KillSwitchState = RELEASED;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.#state = (await ctx.storage.get<KillSwitchState>(STATE_KEY)) ?? RELEASED;
    });
  }

  async #fanOut(state: KillSwitchState): Promise<number> {
    const shards = Array.from({ length: KILL_SWITCH_SHARDS }, (_, shard) => shardStub(this.env, shard).apply(state));
    const results = await Promise.allSettled(shards);
    return results.filter((r) => r.status === 'fulfilled' && r.value.version === state.version).length;
  }

  /**
   * Engages or releases the switch. Answers only when every shard holds the change.
   *
   * @throws {Error} when a shard could not be written: the change is stored and partly applied (shards
   *   that took an engage are engaged), and repeating the same call completes it.
   */
  async set(change: { engaged: boolean; reason: string; by: string }): Promise<KillSwitchReport> {
    // Changes are serialised: two admins flipping at once get versions in the order they arrive.
    return this.ctx.blockConcurrencyWhile(async () => {
      const state: KillSwitchState = {
        ...change,
        version: this.#state.version + 1,
        at: Math.floor(Date.now() / 1000),
      };
      await this.ctx.storage.put(STATE_KEY, state);
      this.#state = state;
      const current = await this.#fanOut(state);
      if (current < KILL_SWITCH_SHARDS) {
        throw new Error(`kill switch v${state.version} reached ${current} of ${KILL_SWITCH_SHARDS} shards`);
      }
      return { ...state, shards: { total: KILL_SWITCH_SHARDS, current } };
    });
  }

  /** The authoritative state and how many shards hold it. */
  async report(): Promise<KillSwitchReport> {
    const states = await Promise.allSettled(
      Array.from({ length: KILL_SWITCH_SHARDS }, (_, shard) => shardStub(this.env, shard).state()),
    );
    const current = states.filter((r) => r.status === 'fulfilled' && r.value.version === this.#state.version).length;
    return { ...this.#state, shards: { total: KILL_SWITCH_SHARDS, current } };
  }
}
