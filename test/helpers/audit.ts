/**
 * The audit log: drained from the objects' chains into D1 without sleeping, read back, and the one record a
 * request added.
 */
import { env } from 'cloudflare:workers';
import { expect, vi } from 'vitest';
import { INTAKE_SHARDS } from '../../worker/audit/intake';
import type { AuditEvent } from '../../worker/audit/schema';
import { loadedPolicy } from '../../worker/policy/loaded';
import { agentObject } from './agent-object';

/** Every Durable Object that holds an audit chain: the inventory's agents, the kill switch, the intake shards. */
function chainObjects() {
  const agents = Object.keys(loadedPolicy().bundle.agents).map((id) => agentObject(id));
  const intakes = Array.from({ length: INTAKE_SHARDS }, (_, shard) =>
    env.AUDIT_INTAKE.get(env.AUDIT_INTAKE.idFromName(`intake-${shard}`)),
  );
  return { agents, intakes, killSwitch: env.KILL_SWITCH.get(env.KILL_SWITCH.idFromName('global')) };
}

/**
 * Waits until every record committed so far is in D1: each chain sends what it holds to the audit queue now,
 * instead of waiting for its timer, the chain holding the newest record last, so D1's last record is the
 * newest decision's; then D1 is polled until it holds every chain's head, and each chain forgets what D1 holds.
 * With `closeWindows`, every object also summarises the records it only counted (audit/sampler.ts).
 */
export async function drainAudit(options: { closeWindows?: boolean } = {}): Promise<void> {
  const { agents, intakes, killSwitch } = chainObjects();
  const chains: {
    backlog(): Promise<{ chain: string; waiting: number; unconfirmed: number; newestAt: number | null }>;
    heads(): Promise<{ head: { seq: number } }>;
    flush(): Promise<boolean>;
  }[] = [
    ...agents.map((stub) => ({
      backlog: () => stub.backlog(),
      heads: () => stub.heads(),
      flush: () => stub.flushAudit(options.closeWindows ?? false),
    })),
    {
      backlog: () => killSwitch.backlog(),
      heads: () => killSwitch.heads(),
      flush: () => killSwitch.flushAudit(options.closeWindows ?? false),
    },
    ...intakes.map((stub) => ({
      backlog: () => stub.backlog(),
      heads: () => stub.heads(),
      flush: () => stub.flushAudit(options.closeWindows ?? false),
    })),
  ];
  const waiting = await Promise.all(chains.map(async (chain) => ({ chain, backlog: await chain.backlog() })));
  const order = waiting
    .filter(({ backlog }) => backlog.waiting > 0 || backlog.unconfirmed > 0 || options.closeWindows)
    .sort(
      (a, b) => (a.backlog.newestAt ?? Number.POSITIVE_INFINITY) - (b.backlog.newestAt ?? Number.POSITIVE_INFINITY),
    );
  for (const { chain } of order) expect(await chain.flush()).toBe(true);
  const wanted = await Promise.all(
    order.map(async ({ chain, backlog }) => ({ name: backlog.chain, seq: (await chain.heads()).head.seq })),
  );
  // Polled by hand, not with vi.waitFor, which moves a faked Date on with every poll.
  for (let deadline = performance.now() + 10_000; ; ) {
    const { results } = await env.AUDIT_DB.prepare(
      'SELECT chain, MAX(chain_seq) AS seq FROM audit_events GROUP BY chain',
    ).all<{ chain: string; seq: number }>();
    const held = new Map(results.map((row) => [row.chain, row.seq]));
    const behind = wanted.filter(({ name, seq }) => (held.get(name) ?? 0) < seq);
    if (behind.length === 0) break;
    if (performance.now() > deadline) throw new Error(`D1 does not hold ${behind.map((c) => c.name).join(', ')}`);
    await scheduler.wait(10);
  }
  for (const { chain } of order) expect(await chain.flush()).toBe(true);
}

/**
 * Every audit record in the order D1 received them (`seq`), with columns in their D1 (snake_case) names
 * mapped to the schema's; the chains are drained first.
 */
export async function auditRecords(): Promise<AuditEvent[]> {
  await drainAudit();
  const { results } = await env.AUDIT_DB.prepare('SELECT * FROM audit_events ORDER BY seq').all<
    Record<string, unknown>
  >();
  return results.map(
    (row) =>
      Object.fromEntries(
        Object.entries(row).map(([column, value]) => [
          column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
          value,
        ]),
      ) as unknown as AuditEvent,
  );
}

/**
 * Whether a record is a request's: approval notifications are the agent object's alarm at work, delivered
 * whenever it fires, so they are left out of "the record a request added".
 */
export const requestRecord = (record: AuditEvent) => record.event !== 'approval.notify';

/**
 * Waits until exactly `count` audit records match, polling D1 (drained each time) for up to 10 s, and returns
 * them. For refusals of unknown callers, which go to intake shards picked at random and, on a loaded machine,
 * may land after their answer: counted, not taken as the newest.
 */
export async function matchingAudit(match: (record: AuditEvent) => boolean, count: number): Promise<AuditEvent[]> {
  let matching: AuditEvent[] = [];
  await vi.waitFor(
    async () => {
      matching = (await auditRecords()).filter(match);
      expect(matching).toHaveLength(count);
    },
    { timeout: 10_000, interval: 100 },
  );
  return matching;
}

/** The newest audit record a request made (the chains are drained oldest waiting record first). */
export async function lastAudit(): Promise<AuditEvent> {
  const records = (await auditRecords()).filter(requestRecord);
  const last = records.at(-1);
  if (last === undefined) throw new Error('no audit record');
  return last;
}

/** A record's `detail`, parsed (null when there is no record or no detail). */
export const detailOf = (record: { detail: string | null } | undefined) =>
  JSON.parse(record?.detail ?? 'null') as Record<string, unknown>;

/** Sends one request and returns the response with the one audit record it added (notifications aside). */
export async function sendAudited(send: () => Promise<Response>): Promise<{ response: Response; audit: AuditEvent }> {
  const before = (await auditRecords()).filter(requestRecord).length;
  const response = await send();
  const after = (await auditRecords()).filter(requestRecord);
  expect(after.length).toBe(before + 1);
  return { response, audit: after.at(-1) as AuditEvent };
}
