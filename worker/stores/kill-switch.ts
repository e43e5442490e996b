/**
 * The kill switch as the worker sees it: a lease per isolate on what one shard says, and the control object
 * for admins. Names the `KILL_SWITCH` binding; the shards' stubs come from `control/kill-switch.ts`, which
 * the control object fans out through too.
 *
 * The lease: an isolate asks its shard (one, picked at random when the isolate starts) and trusts the answer
 * for `KILL_SWITCH_LEASE_MS` from just before it asked, measured on its own monotonic clock. A request uses the
 * lease only while more of it is left than the agent's object may take to answer, so a token never leaves on a
 * lease that ran out; an engage waits a whole lease before it answers (`KillSwitchControl.set`). So the shard
 * is asked about once a lease per isolate, not once a request, and ahead of need, off the request's path; and
 * the promise holds: once an engage has answered, no token is issued.
 */
import type { AuditDraft } from '../audit/record';
import type { KillSwitchControl, KillSwitchReport, KillSwitchState } from '../control/kill-switch';
import { KILL_SWITCH_SHARDS, killSwitchLeaseMs, shardStub } from '../control/kill-switch';
import { callStore } from './call';

/** An engage or release waits this long for all shards and the lease before answering 503; a read as long. */
const CONTROL_DEADLINE_MS = 20_000;
/** Requests keep at most this much of a lease for the agent object's answer (and at most 60 % of a lease). */
const MAX_ADMISSION_DEADLINE_MS = 3000;

/** How long a request may wait for the agent's object: what a fresh lease keeps in hand. */
export function admissionDeadlineMs(env: Env): number {
  return Math.min(MAX_ADMISSION_DEADLINE_MS, Math.floor(killSwitchLeaseMs(env) * 0.6));
}

function control(env: Env): DurableObjectStub<KillSwitchControl> {
  return env.KILL_SWITCH.get(env.KILL_SWITCH.idFromName('global'));
}

export interface Lease extends KillSwitchState {
  /**
   * Until when the state may be trusted, on this isolate's monotonic clock (`performance.now()`): a lease is
   * a duration measured here from just before the shard was asked, and the engage waits a duration measured
   * there, so neither depends on the two clocks agreeing on the time of day.
   */
  until: number;
}

/** How much of a lease is left, in ms. */
export function leaseRemainingMs(lease: Lease): number {
  return lease.until - performance.now();
}

/** Starts work that the request does not wait for (the route's `waitUntil`). */
export type InBackground = (work: Promise<unknown>) => void;

/**
 * The share of a lease, before only `keepMs` is left, in which it is renewed in the background: with a 5 s
 * lease and 3 s kept, a busy isolate asks its shard every 1.5 s and no request waits for it.
 */
const RENEW_AHEAD_SHARE = 0.1;

export interface LeaseOptions {
  /** How long a shard's answer may be trusted, from just before it was asked. */
  leaseMs: number;
  /** The least a lease must have left for a request to use it: the agent object's deadline. */
  keepMs: number;
  /** Asks the shard. */
  read(): Promise<KillSwitchState>;
  /** The monotonic clock leases are measured on; default `performance.now`. */
  now?: () => number;
}

/**
 * The kill switch state an isolate may act on, as a lease on what its shard said. A request uses the lease
 * held while more than `keepMs` of it is left. In the last {@link RENEW_AHEAD_SHARE} of that time the lease
 * is renewed in the background (one renewal at a time), so under steady traffic no request waits for the
 * shard; a request finds none to use only after a quiet spell or a renewal that failed, and then asks the
 * shard itself, failing closed if it does not answer.
 */
export class KillSwitchLease {
  readonly #options: LeaseOptions;
  readonly #now: () => number;
  #held: Lease | undefined;
  #renewing = false;

  constructor(options: LeaseOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
  }

  /** How much of `lease` is left, in ms. */
  remainingMs(lease: Lease): number {
    return lease.until - this.#now();
  }

  /**
   * The lease to act on now, with more than `keepMs` left, and the round trip it took when none held could
   * be used.
   *
   * @throws {BrokerError} `store_unavailable` (503) when the shard does not answer a renewal the request waits for.
   */
  async current(background: InBackground): Promise<{ lease: Lease; roundTripMs?: number }> {
    const held = this.#held;
    const { keepMs, leaseMs } = this.#options;
    const remaining = held === undefined ? 0 : this.remainingMs(held);
    if (held === undefined || remaining <= keepMs) {
      const asked = this.#now();
      return { lease: await this.#renew(), roundTripMs: this.#now() - asked };
    }
    if (remaining <= keepMs + leaseMs * RENEW_AHEAD_SHARE && !this.#renewing) {
      this.#renewing = true;
      background(
        this.#renew()
          .catch((error: unknown) => console.error('kill switch lease: background renewal failed', error))
          .finally(() => {
            this.#renewing = false;
          }),
      );
    }
    return { lease: held };
  }

  async #renew(): Promise<Lease> {
    const asked = this.#now();
    const state = await callStore('kill_switch', () => this.#options.read(), this.#options.keepMs);
    const lease = { ...state, until: asked + this.#options.leaseMs };
    // Renewals overlap (one in the background, one a request waits for): the one asked last is the newest.
    if (this.#held === undefined || lease.until > this.#held.until) this.#held = lease;
    return lease;
  }
}

/** The shard this isolate asks. */
const SHARD = Math.floor(Math.random() * KILL_SWITCH_SHARDS);
let isolateLease: KillSwitchLease | undefined;

/**
 * The kill switch state this isolate may act on now, with more than {@link admissionDeadlineMs} of its lease
 * left (see {@link KillSwitchLease}); renewals ahead of need run through `background`.
 *
 * @throws {BrokerError} `store_unavailable` (503) when the shard does not answer a renewal the request needs.
 */
export function killSwitchLease(env: Env, background: InBackground): Promise<{ lease: Lease; roundTripMs?: number }> {
  isolateLease ??= new KillSwitchLease({
    leaseMs: killSwitchLeaseMs(env),
    keepMs: admissionDeadlineMs(env),
    read: () => shardStub(env, SHARD).state(),
  });
  return isolateLease.current(background);
}

/** Engages or releases the switch (recorded with the change); answers once no isolate can issue on the old state. */
export function setKillSwitch(
  env: Env,
  change: { engaged: boolean; reason: string; by: string },
  draft: AuditDraft,
): Promise<KillSwitchReport> {
  return callStore('kill_switch', () => control(env).set(change, draft), CONTROL_DEADLINE_MS);
}

/** The authoritative state and how many shards hold it; the read is recorded with `draft`. */
export function killSwitchReport(env: Env, draft?: AuditDraft): Promise<KillSwitchReport> {
  return callStore('kill_switch', () => control(env).report(draft), CONTROL_DEADLINE_MS);
}

/** The control object's audit chain: its backlog, heads and a forced forwarding. */
export function killSwitchChain(env: Env) {
  return {
    backlog: () => control(env).backlog(),
    heads: () => control(env).heads(),
    flush: () => control(env).flushAudit(),
  };
}
