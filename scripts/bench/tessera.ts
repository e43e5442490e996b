/**
 * A Tessera run on a broker of its own: from a cold start (the time to its first token), the load from
 * bench agents in turn, then what the run cost the broker's storage (see `storage.ts`) and the audit check:
 * D1 must hold exactly one granted record per token received.
 */
import { freePort, type LocalBroker, startLocalBroker, type WorkerBundle } from '../lib/local-broker';
import { costFigures, type D1Holding, d1Holding, d1Reached, type MeterCounts, readMeter } from './cost';
import { type BenchAgent, type BodyMaker, exchangeBodies } from './fixtures';
import { type RequestPool, tokenId } from './load';
import { FORM, log, measure, WARMUP_BODIES } from './measure';
import type { AuditCheck, Figures, StorageFigures, TargetFigures, TesseraRun } from './results';
import { auditDelay, type Drained, drainBacklog } from './storage';

/** How long the audit backlog may take to reach D1 after a run before the audit check goes ahead anyway. */
const DRAIN_DEADLINE_MS = 30_000;

/** Waits for the agents' audit records to reach D1, saying so when the deadline passed first. */
async function drained(name: string, broker: LocalBroker, credential: string): Promise<Drained> {
  const drain = await drainBacklog(broker, credential, DRAIN_DEADLINE_MS);
  if (!drain.drained) {
    log(`${name}: ${drain.waiting} agents' audit records still waiting for D1 after ${DRAIN_DEADLINE_MS / 1000} s`);
  }
  return drain;
}

/**
 * What the run cost the broker's storage: the D1 figures from the drained reads before and after it, the
 * round trips from its answers, the audit delay from D1.
 */
async function storageFigures(
  broker: LocalBroker,
  run: Figures,
  runTokenIds: string[],
  before: Drained,
  after: Drained,
): Promise<StorageFigures> {
  const writeQueries = after.backlog.d1.write_queries - before.backlog.d1.write_queries;
  const { answers, entries } = run.serverTiming;
  if (answers === 0)
    throw new Error('no /token answer carried Server-Timing: the broker does not report its round trips');
  return {
    d1: {
      writeQueries,
      recordsWritten: after.backlog.d1.records_written - before.backlog.d1.records_written,
      failedQueries: after.backlog.d1.retried_deliveries - before.backlog.d1.retried_deliveries,
      perToken: writeQueries / run.tokens,
    },
    roundTripsInSeries: entries / answers,
    auditDelay: await auditDelay(broker, runTokenIds),
    drain: { waitedMs: after.waitedMs, drained: after.drained, waiting: after.waiting },
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
  // Without Miniflare's emulation of the static-assets router, which would take every request first (see
  // startLocalBroker); the platform floor has none either.
  // With the billing meter on: the cost model reads it before and after the run (see cost.ts).
  const broker = await startLocalBroker({
    bundle,
    port,
    storageRoot,
    assets: false,
    bindings: { BILLING_METER: 'on' },
  });
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

    let before: Drained | undefined;
    let billed: { meter: MeterCounts; d1: D1Holding } | undefined;
    const measured = await measure(name, `${broker.url}/token`, pool, make, {
      // Every agent's object exists before the run: the run measures spread load, not object creation.
      ...(agents.length > 1 && { prime: agents.length }),
      beforeRun: async () => {
        // The warm-up's records reach D1 first, so the run's D1 writes are the run's alone.
        before = await drained(name, broker, credential);
        billed = { meter: await readMeter(broker, credential), d1: await d1Holding(broker) };
      },
    });
    if (before === undefined || billed === undefined) throw new Error('the backlog was not read before the run');
    tokenIds.push(...measured.warmupTokenIds, ...measured.runTokenIds);
    // The meter's window ends once D1 holds every token's record, asked of D1 itself: the backlog reads below
    // call every agent's object, which would be billed to the run.
    const d1After = await d1Reached(broker, tokenIds.length, DRAIN_DEADLINE_MS);
    const meterAfter = await readMeter(broker, credential);
    const { wake, run: ran, contention } = measured.figures;
    const cost = costFigures(
      { before: billed.meter, after: meterAfter },
      { before: billed.d1, after: d1After },
      wake.tokens + ran.tokens,
      contention === undefined ? Number.NaN : contention.targetCpuMs / ran.tokens,
    );
    log(
      `${name}: $${cost.dollarsPerMillion.total.toFixed(3)} per million tokens (${cost.perToken.doRequests.toFixed(2)} DO requests, ${cost.perToken.doRowsWritten.toFixed(2)} DO rows written, ${cost.perToken.d1RowsWritten.toFixed(2)} D1 rows written per token)`,
    );
    const after = await drained(name, broker, credential);
    log(`${name}: agents' audit records in D1 ${(after.waitedMs / 1000).toFixed(1)} s after the run`);
    const storage = await storageFigures(broker, measured.figures.run, measured.runTokenIds, before, after);
    const audit = await checkAudit(name, broker, tokenIds);
    return {
      figures: measured.figures,
      run: { agents: agents.length, coldStart: { readyMs, firstTokenMs }, audit, storage, cost },
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
