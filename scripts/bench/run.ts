/**
 * `npm run bench`: Tessera's `/token` under load, side by side with a peer and a floor, on this machine.
 *
 *  1. bundles the worker as `wrangler deploy --dry-run` does (its gzip size is reported), once with
 *     `policies/` and once with a bench policy that adds a bench agent with its own key and a rate limit
 *     that does not throttle the run; the working tree's policy bundle is never written;
 *  2. starts the broker on workerd (Miniflare, no `wrangler dev` proxy) with its real Durable Objects and a
 *     fresh local D1, and times the first token from that cold start;
 *  3. loads each target in turn over loopback with autocannon, with the same connections and duration,
 *     each request carrying its own attestation (or client assertion) signed beforehand, used once:
 *     - Tessera `/token`: attestation in, token out, with replay check, revocation state, policy, audit;
 *     - the peer: oidc-provider, `client_credentials` with `private_key_jwt` and a resource indicator,
 *       issuing ES256 `at+jwt` access tokens (a child Node process);
 *     - the floor: a Worker on the same workerd that only verifies the attestation and signs a token;
 *  4. checks that D1 holds exactly one granted audit record per token Tessera returned;
 *  5. prints a table, writes `bench-results/latest.json` and the figures in `docs/benchmarks.md`.
 *
 * The broker's Durable Objects and D1 keep their SQLite files in memory (a tmpfs, `/dev/shm`) where there is
 * one, as the peer keeps its state in memory: a local disk's fsync is not what durability costs on
 * Cloudflare. `--storage disk` puts them on disk instead.
 *
 * Exits non-zero when the audit check fails or a target cannot be run; missed performance targets are
 * reported, not failed: this is a benchmark, not a timed test.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { unstable_getMiniflareWorkerOptions } from 'wrangler';
import { bundleWorker, freePort, type LocalBroker, PROJECT_ROOT, startLocalBroker } from '../lib/local-broker';
import { measureContention } from './contention';
import { type BenchAgent, benchAgent, benchPolicies, clientCredentialsBodies, exchangeBodies } from './fixtures';
import { type LoadResult, type LoadSettings, type RequestPool, runLoad, tokenId } from './load';
import {
  type AuditCheck,
  type BenchResults,
  type Figures,
  goals,
  machine,
  renderTable,
  saveResults,
  type TargetFigures,
} from './report';
import { bundleFloor, startFloor, startPeer } from './targets';

/** The load every target gets: the same connections, the same time. */
const LOAD: LoadSettings = { connections: 10, seconds: 20 };
/** Before each measured run: JIT, caches, Durable Objects and keys warmed up, on the same pool. */
const WARMUP: LoadSettings = { connections: LOAD.connections, seconds: 3 };
/** Bodies signed for a warm-up: about what the fastest target sends in WARMUP.seconds on a small machine (a
 * warm-up that runs out ends early). */
const WARMUP_BODIES = 10_000;
/** The run's pool is sized from the warm-up's rate, with this much room for the run to go faster. */
const POOL_HEADROOM = 2;
/** Never sign more than this many bodies for one run (bounds memory and signing time). */
const MAX_RUN_BODIES = 300_000;
const FORM = 'application/x-www-form-urlencoded';

const { values: flags } = parseArgs({ options: { storage: { type: 'string', default: 'memory' } } });
if (flags.storage !== 'memory' && flags.storage !== 'disk') {
  console.error('usage: npm run bench [-- --storage memory|disk]');
  process.exit(2);
}
/** Where the broker keeps its storage, and how the report names it. */
const STORAGE =
  flags.storage === 'memory' && existsSync('/dev/shm')
    ? { root: '/dev/shm', label: 'memory (tmpfs, /dev/shm)' }
    : { root: tmpdir(), label: `disk (${tmpdir()})` };

const started = performance.now();
const log = (message: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${message}`);

/** Adds bodies to `pool` until `count` are unused. */
async function topUp(pool: RequestPool, count: number, make: (count: number) => Promise<string[]>): Promise<void> {
  const missing = count - (pool.bodies.length - pool.next);
  if (missing > 0) pool.bodies.push(...(await make(missing)));
}

function figures({ tokenIds: _ids, ...rest }: LoadResult): Figures {
  return rest;
}

/**
 * Warms `url` up, sizes the pool for the run from the warm-up's rate, then runs. Both consume the pool.
 * `onTokens` receives the `jti` of every token, warm-up included.
 */
async function measure(
  name: string,
  url: string,
  pool: RequestPool,
  make: (count: number) => Promise<string[]>,
  onTokens: (ids: string[]) => void = () => undefined,
): Promise<TargetFigures> {
  await topUp(pool, WARMUP_BODIES, make);
  log(`${name}: warm-up, ${WARMUP.seconds} s`);
  const warmup = await runLoad(url, pool, WARMUP);
  onTokens(warmup.tokenIds);
  const rate = warmup.requests / warmup.elapsed;
  await topUp(pool, Math.min(MAX_RUN_BODIES, Math.ceil(rate * LOAD.seconds * POOL_HEADROOM) + LOAD.connections), make);
  log(`${name}: ${LOAD.seconds} s, ${LOAD.connections} connections (${pool.bodies.length - pool.next} bodies ready)`);
  const contention = measureContention();
  const run = await runLoad(url, pool, LOAD);
  const taken = contention();
  onTokens(run.tokenIds);
  log(`${name}: ${run.tokensPerSecond.toFixed(0)} tokens/s, p99 ${run.latency.p99.toFixed(1)} ms`);
  if (run.tokens === 0) throw new Error(`${name} issued no token: ${JSON.stringify(figures(run))}`);
  return { warmup: figures(warmup), run: figures(run), ...(taken !== undefined && { contention: taken }) };
}

/** Tessera, from a cold start: the time to its first token, then the load. */
async function measureTessera(agent: BenchAgent, bundle: Awaited<ReturnType<typeof bundleWorker>>) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const make = (count: number) => exchangeBodies(agent, issuer, count);
  const pool: RequestPool = { contentType: FORM, bodies: await make(WARMUP_BODIES), next: 0 };
  const tokenIds: string[] = [];

  log('Tessera: cold start');
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
    log(`Tessera: first token ${firstTokenMs.toFixed(0)} ms after start`);

    const figures = await measure('Tessera', `${broker.url}/token`, pool, make, (ids) => tokenIds.push(...ids));
    const audit = await checkAudit(broker, tokenIds);
    return { figures, audit, coldStart: { readyMs, firstTokenMs }, pool, issuer };
  } finally {
    await broker.dispose();
  }
}

/** Compares the tokens received with D1's granted `token.exchange` records, by token `jti`. */
async function checkAudit(broker: LocalBroker, tokenIds: string[]): Promise<AuditCheck> {
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
  log(`Tessera: ${audit.grantedRecords} granted audit records for ${audit.tokensReceived} tokens`);
  return audit;
}

async function main(): Promise<number> {
  const agent = await benchAgent();
  const policies = await benchPolicies(agent);
  log('bundling: the worker (as deployed and with the bench policy) and the floor');
  const bundles = await Promise.allSettled([
    bundleWorker(),
    bundleWorker({ policyDir: policies.dir }),
    bundleFloor(),
  ] as const);
  try {
    const [deployed, bench, floorBundle] = bundles;
    if (deployed.status === 'rejected') throw deployed.reason;
    if (bench.status === 'rejected') throw bench.reason;
    if (floorBundle.status === 'rejected') throw floorBundle.reason;
    log(`bundle: ${(deployed.value.gzipBytes / 1024).toFixed(1)} KiB gzip`);

    const tessera = await measureTessera(agent, bench.value);

    // The floor verifies the very attestations Tessera was sent (it keeps no replay state), more if needed.
    const floorPort = await freePort();
    const floor = await startFloor({
      dir: floorBundle.value.dir,
      port: floorPort,
      issuer: tessera.issuer,
      agentKey: agent.publicJwk,
      compatibilityDate: compatibilityDate(),
    });
    let floorFigures: TargetFigures;
    try {
      floorFigures = await measure(
        'floor',
        floor.tokenEndpoint,
        { contentType: FORM, bodies: tessera.pool.bodies, next: 0 },
        (count) => exchangeBodies(agent, tessera.issuer, count),
      );
    } finally {
      await floor.dispose();
    }

    const peer = await startPeer({ port: await freePort(), clientKey: agent.publicJwk });
    let peerFigures: TargetFigures;
    try {
      const make = (count: number) => clientCredentialsBodies(agent, peer.tokenEndpoint, count);
      peerFigures = await measure('peer', peer.tokenEndpoint, { contentType: FORM, bodies: [], next: 0 }, make);
    } finally {
      await peer.dispose();
    }

    const partial: Omit<BenchResults, 'goals'> = {
      date: new Date().toISOString(),
      machine: machine(),
      settings: {
        connections: LOAD.connections,
        seconds: LOAD.seconds,
        warmupSeconds: WARMUP.seconds,
        storage: STORAGE.label,
      },
      bundle: { uploadBytes: deployed.value.uploadBytes, gzipBytes: deployed.value.gzipBytes },
      coldStart: tessera.coldStart,
      targets: { tessera: tessera.figures, peer: peerFigures, floor: floorFigures },
      ratios: {
        tokensPerSecondVsPeer: tessera.figures.run.tokensPerSecond / peerFigures.run.tokensPerSecond,
        p99VsPeer: tessera.figures.run.latency.p99 / peerFigures.run.latency.p99,
        tokensPerSecondVsFloor: tessera.figures.run.tokensPerSecond / floorFigures.run.tokensPerSecond,
      },
      audit: tessera.audit,
      elapsedSeconds: (performance.now() - started) / 1000,
    };
    const results: BenchResults = { ...partial, goals: goals(partial) };
    console.log(`\n${renderTable(results)}\n`);
    const saved = await saveResults(results);
    console.log(`wrote ${saved.json} and ${saved.docs}`);
    if (!results.audit.ok) {
      console.error(
        `AUDIT CHECK FAILED: ${results.audit.tokensReceived} tokens received, ${results.audit.grantedRecords} granted records in D1 (${results.audit.missing} missing, ${results.audit.duplicated} duplicated, ${results.audit.unreceived} for tokens never received)`,
      );
      return 1;
    }
    return 0;
  } finally {
    for (const bundle of bundles) if (bundle.status === 'fulfilled') await bundle.value.dispose();
    await policies.dispose();
  }
}

/** The broker's compatibility date, which the floor runs with too. */
function compatibilityDate(): string {
  const date = unstable_getMiniflareWorkerOptions(join(PROJECT_ROOT, 'wrangler.toml')).workerOptions.compatibilityDate;
  if (typeof date !== 'string') throw new Error('wrangler.toml has no compatibility_date');
  return date;
}

process.exitCode = await main();
log('done');
