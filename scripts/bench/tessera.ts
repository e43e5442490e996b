/**
 * A Tessera run on a broker of its own: from a cold start (the time to its first token), the load from
 * bench agents in turn, then what the run cost the broker's storage (see `storage.ts`) and the audit check:
 * D1 must hold exactly one granted record per token received.
 */
import { freePort, type LocalBroker, startLocalBroker, type WorkerBundle } from '../lib/local-broker';
import { type BenchAgent, type BodyMaker, exchangeBodies } from './fixtures';
import { type RequestPool, tokenId } from './load';
import { FORM, log, measure, WARMUP_BODIES } from './measure';
import type { AuditCheck, Figures, StorageFigures, TargetFigures, TesseraRun } from './results';
import { auditDelay, type Backlog, type Drained, drainBacklog } from './storage';

/** How long the audit backlog may take to reach D1 after a run before the audit check goes ahead anyway. */
const DRAIN_DEADLINE_MS = 30_000;

/** Waits for the broker's audit backlog to drain; undefined when the broker has none to report. */
async function drained(name: string, broker: LocalBroker, credential: string): Promise<Drained | undefined> {
  const drain = await drainBacklog(broker, credential, DRAIN_DEADLINE_MS);
  if (drain !== undefined && !drain.drained) {
    log(`${name}: ${drain.backlog.waiting} audit records still waiting for D1 after ${DRAIN_DEADLINE_MS / 1000} s`);
  }
  return drain;
}

/** What the run cost the broker's storage, from the backlog before and after it and its answers. */
async function storageFigures(
  broker: LocalBroker,
  run: Figures,
  runTokenIds: string[],
  before: Backlog | undefined,
  after: Drained | undefined,
): Promise<StorageFigures> {
  const d1 =
    before === undefined || after === undefined
      ? null
      : {
          writeQueries: after.backlog.d1.write_queries - before.d1.write_queries,
          recordsWritten: after.backlog.d1.records_written - before.d1.records_written,
          perToken: (after.backlog.d1.write_queries - before.d1.write_queries) / run.tokens,
        };
  const { answers, entries } = run.serverTiming;
  const delay = await auditDelay(broker, runTokenIds);
  return {
    d1,
    roundTripsInSeries: answers === 0 ? null : entries / answers,
    auditDelay: delay ?? null,
    drain:
      after === undefined ? null : { waitedMs: after.waitedMs, drained: after.drained, waiting: after.backlog.waiting },
  };
}

/**
 * A Tessera run on a broker of its own, from a cold start: the time to its first token, then the load from
 * `agents` in turn, then the storage figures and the audit check.
 */
export async function measureTessera(
  name: string,
  agents: readonly BenchAgent[],
  bundle: WorkerBundle,
  credential: string,
  storageRoot: string,
): Promise<{ figures: TargetFigures; run: TesseraRun; pool: RequestPool; issuer: string; make: BodyMaker }> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const make = exchangeBodies(agents, issuer);
  const pool: RequestPool = { contentType: FORM, bodies: await make(WARMUP_BODIES), next: 0 };
  const tokenIds: string[] = [];

  log(`${name}: cold start`);
  const coldStart = performance.now();
  const broker = await startLocalBroker({ bundle, port, storageRoot });
  const readyMs = performance.now() - coldStart;
  try {
    const first = await fetch(`${broker.url}/token`, {
      method: 'POST',
      headers: { 'content-type': FORM },
      body: pool.bodies[pool.next++],
    });
    const body = await first.text();
    const firstTokenMs = performance.now() - coldStart;
    const jti = first.status === 200 ? tokenId(body) : undefined;
    if (jti === undefined) throw new Error(`the first /token answered ${first.status}: ${body}`);
    tokenIds.push(jti);
    log(`${name}: first token ${firstTokenMs.toFixed(0)} ms after start`);

    let before: Backlog | undefined;
    const measured = await measure(name, `${broker.url}/token`, pool, make, {
      // Every agent's object exists before the run: the run measures spread load, not object creation.
      ...(agents.length > 1 && { prime: agents.length }),
      beforeRun: async () => {
        // The warm-up's records reach D1 first, so the run's D1 writes are the run's alone.
        before = (await drained(name, broker, credential))?.backlog;
      },
    });
    tokenIds.push(...measured.warmupTokenIds, ...measured.runTokenIds);
    const after = await drained(name, broker, credential);
    if (after !== undefined)
      log(`${name}: audit backlog drained ${(after.waitedMs / 1000).toFixed(1)} s after the run`);
    const storage = await storageFigures(broker, measured.figures.run, measured.runTokenIds, before, after);
    const audit = await checkAudit(name, broker, tokenIds);
    return {
      figures: measured.figures,
      run: { agents: agents.length, coldStart: { readyMs, firstTokenMs }, audit, storage },
      pool,
      issuer,
      make,
    };
  } finally {
    await broker.dispose();
  }
}

/** Compares the tokens received with D1's granted `token.exchange` records, by token `jti`. */
async function checkAudit(name: string, broker: LocalBroker, tokenIds: string[]): Promise<AuditCheck> {
  const db = await broker.miniflare.getD1Database('AUDIT_DB');
  const { results } = await db
    .prepare(`SELECT token_jti AS jti FROM audit_events WHERE event = 'token.exchange' AND decision = 'granted'`)
    .all<{ jti: string | null }>();
  const recorded = new Map<string | null, number>();
  for (const { jti } of results) recorded.set(jti, (recorded.get(jti) ?? 0) + 1);
  const received = new Set(tokenIds);
  const missing = tokenIds.filter((jti) => !recorded.has(jti)).length;
  const duplicated = [...recorded.values()].filter((n) => n > 1).length;
  const unreceived = [...recorded.keys()].filter((jti) => jti === null || !received.has(jti)).length;
  const audit: AuditCheck = {
    tokensReceived: tokenIds.length,
    grantedRecords: results.length,
    missing,
    duplicated,
    unreceived,
    refusedRecords: await broker.auditRecordCount({ event: 'token.exchange', decision: 'refused' }),
    ok:
      received.size === tokenIds.length &&
      results.length === tokenIds.length &&
      missing + duplicated + unreceived === 0,
  };
  log(`${name}: ${audit.grantedRecords} granted audit records for ${audit.tokensReceived} tokens`);
  return audit;
}
