/**
 * The audit log as routes see it: the intake shards that record what no agent's object records, the D1
 * replica the chains forward to (listing, lookups, the seal chain, what the queue's consumer wrote),
 * and the backlog on the way. The only code that names the `AUDIT_SEALER` binding, and `AUDIT_DB` but for
 * the outboxes' transport and the queue's consumer; the intake shards' stubs come from `audit/intake.ts`,
 * which the sealer records through too.
 */
import { listSegments } from '../audit/archive';
import { anyIntakeShard, INTAKE_SHARDS, intakeStub } from '../audit/intake';
import type { Backlog } from '../audit/outbox';
import * as query from '../audit/query';
import type { ChainHead, DecidedRecord } from '../audit/record';
import type { AuditSealer } from '../audit/sealer';
import { type DayWindow, lastTokens, usageIn } from '../audit/usage';
import { callStore } from './call';

/** Commits a record that names no single agent (an admin read, a change across agents). */
export function recordInIntake(env: Env, record: DecidedRecord): Promise<void> {
  return callStore('audit_log', () => intakeStub(env, anyIntakeShard()).record(record));
}

/** Records (or counts, past the minute's sample) a refusal of a caller not known yet. */
export function recordUnverified(env: Env, record: DecidedRecord): Promise<void> {
  return callStore('audit_log', () => intakeStub(env, anyIntakeShard()).refused(record));
}

/**
 * Records (or counts, past its window's sample) an admin's read that a console polls. One admin's reads go to
 * one shard, picked by their identity, so that their sample is theirs wherever the request ran.
 */
export function recordPolledRead(env: Env, record: DecidedRecord): Promise<void> {
  return callStore('audit_log', () => intakeStub(env, shardOf(record.actor ?? '')).read(record));
}

/** A shard for `name`, the same every time (FNV-1a). */
function shardOf(name: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i += 1) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % INTAKE_SHARDS;
}

/** Every intake shard's chain: backlog, heads, forced forwarding. */
export function intakeChains(env: Env) {
  return Array.from({ length: INTAKE_SHARDS }, (_, shard) => ({
    chain: `intake:${shard}`,
    backlog: (): Promise<Backlog> => intakeStub(env, shard).backlog(),
    heads: (): Promise<{ head: ChainHead; acked: ChainHead }> => intakeStub(env, shard).heads(),
    flush: (closeWindows = false): Promise<boolean> => intakeStub(env, shard).flushAudit(closeWindows),
  }));
}

function sealer(env: Env): DurableObjectStub<AuditSealer> {
  return env.AUDIT_SEALER.get(env.AUDIT_SEALER.idFromName('global'));
}

/** Seals what is new into the D1 seal chain and returns the head (the cron trigger and the chain check). */
export function sealAuditLog(env: Env): Promise<ChainHead> {
  return sealer(env).seal();
}

/** Seals what is new and moves what is due to the archive (the cron trigger, and admins). */
export function maintainAuditLog(env: Env) {
  return sealer(env).maintain();
}

/** The seal chain's anchored head. */
export function sealedHead(env: Env): Promise<ChainHead> {
  return callStore('audit_sealer', () => sealer(env).head());
}

/** D1, read: bounded like every store call, 503 when it does not answer. */
export function auditDb(env: Env) {
  const db = env.AUDIT_DB;
  return {
    list: (q: query.AuditQuery) => callStore('audit_log', () => query.listAudit(db, q)),
    issuedToken: (jti: string) => callStore('audit_log', () => query.findIssuedToken(db, jti)),
    agentsOfTask: (taskId: string) => callStore('audit_log', () => query.agentsOfTask(db, taskId)),
    approvalsOpened: (sinceMs: number, limit: number) =>
      callStore('audit_log', () => query.approvalsOpened(db, sinceMs, limit)),
    writerStats: () => callStore('audit_log', () => query.writerStats(db)),
    hotWindow: () => callStore('audit_log', () => query.hotWindow(db, Date.now())),
    /** The decisions counted per day in `window` (`usage_daily`), of one agent when `agent` is given. */
    usage: (window: DayWindow, agent?: string) => callStore('audit_log', () => usageIn(db, window, agent)),
    /** When each of `agents` last got a token, as far as the hot log says. */
    lastTokens: (agents: readonly string[]) => callStore('audit_log', () => lastTokens(db, agents)),
    /** The archive's segments, as D1 lists them, oldest first. */
    segments: () => callStore('audit_log', () => listSegments(db)),
    /** The raw database, for the chain check, which pages through it itself. */
    db,
  };
}
