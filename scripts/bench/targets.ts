/**
 * The two servers the broker is measured against: the floor (a Worker on the same workerd, see
 * `floor/worker.ts`) and the peer (`oidc-provider` in a child Node process, see `peer.ts`).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JWK } from 'jose';
import { convertV4MiniflareOptions, Miniflare } from 'miniflare';
import { bundleModules, PROJECT_ROOT, wranglerBundle } from '../lib/local-broker';
import { AUDIENCE, BENCH_AGENT, SCOPE } from './fixtures';

/** A server under load: its token endpoint, and how to stop it. */
export interface Target {
  tokenEndpoint: string;
  dispose(): Promise<void>;
}

const FLOOR_CONFIG = fileURLToPath(new URL('./floor/wrangler.toml', import.meta.url));

/** Bundles the floor Worker as wrangler would deploy it. */
export async function bundleFloor(): Promise<{ dir: string; dispose(): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'tessera-bench-floor-'));
  const dir = join(root, 'worker');
  const dispose = () => rm(root, { recursive: true, force: true });
  try {
    await wranglerBundle({ config: FLOOR_CONFIG, outDir: dir });
  } catch (error) {
    await dispose();
    throw error;
  }
  return { dir, dispose };
}

/**
 * Starts the floor on Miniflare (workerd), on `port`, verifying attestations of `agentKey` that name
 * `issuer`, like the broker's.
 */
export async function startFloor(options: {
  dir: string;
  port: number;
  issuer: string;
  agentKey: JWK;
  compatibilityDate: string;
}): Promise<Target> {
  const miniflare = new Miniflare(
    convertV4MiniflareOptions({
      name: 'tessera-bench-floor',
      modules: await bundleModules(options.dir),
      modulesRoot: options.dir,
      compatibilityDate: options.compatibilityDate,
      bindings: { ATTESTATION_KEY: JSON.stringify(options.agentKey), ISSUER: options.issuer },
      // Served as the broker is (see startLocalBroker): on a socket of its own, not through Miniflare's entry.
      unsafeDirectSockets: [{ host: '127.0.0.1', port: options.port }],
      host: '127.0.0.1',
      port: 0,
      cf: false,
    }),
  );
  try {
    await miniflare.ready;
  } catch (error) {
    await miniflare.dispose();
    throw error;
  }
  return { tokenEndpoint: `http://127.0.0.1:${options.port}/token`, dispose: () => miniflare.dispose() };
}

const PEER_SCRIPT = fileURLToPath(new URL('./peer.ts', import.meta.url));

/**
 * Starts the peer in a child Node process (the same Node as this one, through tsx), on `port`, with the
 * bench agent registered as a `private_key_jwt` client. Resolves once it listens.
 */
export function startPeer(options: { port: number; clientKey: JWK }): Promise<Target> {
  const child = spawn(process.execPath, ['--import', 'tsx', PEER_SCRIPT], {
    cwd: PROJECT_ROOT,
    env: {
      ...process.env,
      NODE_ENV: 'production',
      PEER_PORT: String(options.port),
      PEER_CLIENT_ID: BENCH_AGENT,
      PEER_CLIENT_JWK: JSON.stringify(options.clientKey),
      PEER_RESOURCE: AUDIENCE,
      PEER_SCOPE: SCOPE,
    },
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
      if (/^ready /m.test(output)) resolve({ tokenEndpoint: `http://127.0.0.1:${options.port}/token`, dispose });
    };
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      reject(new Error(`the peer exited (${code ?? signal}) before listening:\n${output}`)),
    );
  });
}
