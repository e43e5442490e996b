/**
 * The kill switch as the worker sees it: a lease per isolate on what one shard says, and the control object
 * for admins. The only code that names the `KILL_SWITCH` and `KILL_SWITCH_SHARDS` bindings.
 *
 * The lease: an isolate asks its shard (one, picked at random when the isolate starts) and trusts the answer
 * for `KILL_SWITCH_LEASE_MS` from just before it asked, measured on its own monotonic clock. A request uses the lease only while more of it is
 * left than the agent's object may take to answer, so a token never leaves on a lease that ran out; an engage
 * waits a whole lease before it answers (`KillSwitchControl.set`). So the shard is asked once a lease per
 * isolate, not once a request, and the promise holds: once an engage has answered, no token is issued.
 */
import type { AuditDraft } from '../audit/record';
import type { KillSwitchControl, KillSwitchReport, KillSwitchShard, KillSwitchState } from '../control/kill-switch';
import { KILL_SWITCH_SHARDS } from '../control/kill-switch';
import { callStore } from './call';

/** An engage or release waits this long for all shards and the lease before answering 503; a read as long. */
const CONTROL_DEADLINE_MS = 20_000;
/** Requests keep at most this much of a lease for the agent object's answer (and at most 60 % of a lease). */
const MAX_ADMISSION_DEADLINE_MS = 3000;

/** The lease length from `KILL_SWITCH_LEASE_MS`; a value that is not 100..60000 ms stops the worker. */
export function killSwitchLeaseMs(env: Env): number {
  const ms = Number(env.KILL_SWITCH_LEASE_MS);
  if (!Number.isInteger(ms) || ms < 100 || ms > 60_000) {
    throw new Error('KILL_SWITCH_LEASE_MS must be a whole number of milliseconds from 100 to 60000');
  }
  return ms;
}

/** How long a request may wait for the agent's object: what a fresh lease keeps in hand. */
export function admissionDeadlineMs(env: Env): number {
  return Math.min(MAX_ADMISSION_DEADLINE_MS, Math.floor(killSwitchLeaseMs(env) * 0.6));
}

export function shardStub(env: Env, shard: number): DurableObjectStub<KillSwitchShard> {
  return env.KILL_SWITCH_SHARDS.get(env.KILL_SWITCH_SHARDS.idFromName(`shard-${shard}`));
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

/** The shard this isolate asks. */
const SHARD = Math.floor(Math.random() * KILL_SWITCH_SHARDS);
let held: Lease | undefined;

/**
 * The kill switch state this isolate may act on now, with at least {@link admissionDeadlineMs} of its lease
 * left; asks the shard when the lease held has less, and then says how long the round trip took.
 *
 * @throws {BrokerError} `store_unavailable` (503) when the shard does not answer.
 */
export async function killSwitchLease(env: Env): Promise<{ lease: Lease; roundTripMs?: number }> {
  const keep = admissionDeadlineMs(env);
  if (held !== undefined && leaseRemainingMs(held) > keep) return { lease: held };
  const asked = performance.now();
  const state = await callStore('kill_switch', () => shardStub(env, SHARD).state(), keep);
  held = { ...state, until: asked + killSwitchLeaseMs(env) };
  return { lease: held, roundTripMs: performance.now() - asked };
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
