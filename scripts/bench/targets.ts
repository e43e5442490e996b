/**
 * The servers the broker is measured against: the two floors (Workers on the same workerd, see `floor/`),
 * the peers (`oidc-provider` in a child Node process, see `peer.ts`) and the durable peer's Postgres (a
 * child process too, see `postgres.ts`).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JWK } from 'jose';
import { convertV4MiniflareOptions, Miniflare } from 'miniflare';
import { unstable_getMiniflareWorkerOptions } from 'wrangler';
import { bundleModules, PROJECT_ROOT, wranglerBundle } from '../lib/local-broker';
import { AUDIENCE, BENCH_AGENT, SCOPE } from './fixtures';

/** A server under load: its token endpoint, and how to stop it. */
export interface Target {
  tokenEndpoint: string;
  dispose(): Promise<void>;
}

/** `crypto`: verify and sign. `platform`: verify, one Durable Object write of the replay mark, sign. */
export type FloorKind = 'crypto' | 'platform';

function floorConfig(kind: FloorKind): string {
  return fileURLToPath(new URL(`./floor/${kind}.wrangler.toml`, import.meta.url));
}

/** Bundles a floor Worker as wrangler would deploy it. */
export async function bundleFloor(kind: FloorKind): Promise<{ dir: string; dispose(): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), `tessera-bench-${kind}-floor-`));
  const dir = join(root, 'worker');
  const dispose = () => rm(root, { recursive: true, force: true });
  try {
    await wranglerBundle({ config: floorConfig(kind), outDir: dir });
  } catch (error) {
    await dispose();
    throw error;
  }
  return { dir, dispose };
}

/** The broker's compatibility date, which the floors run with too. */
function brokerCompatibilityDate(): string {
  const date = unstable_getMiniflareWorkerOptions(join(PROJECT_ROOT, 'wrangler.toml')).workerOptions.compatibilityDate;
  if (typeof date !== 'string') throw new Error('wrangler.toml has no compatibility_date');
  return date;
}

/**
 * Starts a floor on Miniflare (workerd), on `port`, verifying attestations of `agentKey` that name
 * `issuer`, like the broker's. The platform floor's Durable Objects keep their SQLite files in a fresh
 * directory under `storageRoot`, as the broker's do.
 */
export async function startFloor(options: {
  kind: FloorKind;
  dir: string;
  port: number;
  issuer: string;
  agentKey: JWK;
  storageRoot: string;
}): Promise<Target> {
  const storage = await mkdtemp(join(options.storageRoot, `tessera-bench-${options.kind}-floor-`));
  // The floor's Durable Object bindings and their SQLite backing, as its wrangler file declares them.
  const { modulesRules: _rules, ...workerOptions } = unstable_getMiniflareWorkerOptions(
    floorConfig(options.kind),
  ).workerOptions;
  const miniflare = new Miniflare(
    convertV4MiniflareOptions({
      ...workerOptions,
      name: `tessera-bench-${options.kind}-floor`,
      modules: await bundleModules(options.dir),
      modulesRoot: options.dir,
      compatibilityDate: brokerCompatibilityDate(),
      bindings: { ATTESTATION_KEY: JSON.stringify(options.agentKey), ISSUER: options.issuer },
      // Served as the broker is (see startLocalBroker): on a socket of its own, not through Miniflare's entry.
      unsafeDirectSockets: [{ host: '127.0.0.1', port: options.port }],
      host: '127.0.0.1',
      port: 0,
      resourcePersistencePath: storage,
      cf: false,
    }),
  );
  const dispose = async () => {
    await miniflare.dispose();
    await rm(storage, { recursive: true, force: true });
  };
  try {
    await miniflare.ready;
  } catch (error) {
    await dispose();
    throw error;
  }
  return { tokenEndpoint: `http://127.0.0.1:${options.port}/token`, dispose };
}

/** A child process started by {@link startChild}: what it printed after `ready `, and how to stop it. */
interface Child {
  ready: string;
  dispose(): Promise<void>;
}

/**
 * Runs `script` in a child process with the same Node as this one (through tsx) and `env` added; resolves
 * once it prints a line `ready <something>`. Its output is kept to explain a failed start.
 */
function startChild(name: string, script: string, env: Record<string, string>): Promise<Child> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const dispose = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  };
  return new Promise((resolve, reject) => {
    const onOutput = (chunk: Buffer) => {
      output += chunk.toString();
      const ready = /^ready (.+)\n/m.exec(output)?.[1];
      if (ready !== undefined) resolve({ ready, dispose });
    };
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      reject(new Error(`${name} exited (${code ?? signal}) before ready:\n${output}`)),
    );
  });
}

/**
 * Starts a peer on `port`, with the bench agent registered as a `private_key_jwt` client: in memory, or
 * durable with its state in the Postgres at `databaseUrl`. Resolves once it listens.
 */
export async function startPeer(options: { port: number; clientKey: JWK; databaseUrl?: string }): Promise<Target> {
  const peer = await startChild('the peer', fileURLToPath(new URL('./peer.ts', import.meta.url)), {
    NODE_ENV: 'production',
    PEER_PORT: String(options.port),
    PEER_CLIENT_ID: BENCH_AGENT,
    PEER_CLIENT_JWK: JSON.stringify(options.clientKey),
    PEER_RESOURCE: AUDIENCE,
    PEER_SCOPE: SCOPE,
    ...(options.databaseUrl !== undefined && { PEER_DATABASE_URL: options.databaseUrl }),
  });
  return { tokenEndpoint: `http://127.0.0.1:${options.port}/token`, dispose: peer.dispose };
}

/**
 * Starts Postgres on `port` with its data in a fresh directory under `storageRoot` (removed on dispose).
 * Resolves with its connection URL once it accepts connections.
 */
export async function startPostgres(options: {
  port: number;
  storageRoot: string;
}): Promise<{ url: string; dispose(): Promise<void> }> {
  const server = await startChild('Postgres', fileURLToPath(new URL('./postgres.ts', import.meta.url)), {
    PG_PORT: String(options.port),
    PG_STORAGE_ROOT: options.storageRoot,
  });
  return { url: server.ready, dispose: server.dispose };
}
