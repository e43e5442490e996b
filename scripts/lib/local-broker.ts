/**
 * The real broker, locally, on workerd: the worker bundled as `wrangler deploy` would upload it, run by
 * Miniflare with its real Durable Objects (SQLite-backed) and a real local D1 with `migrations/` applied,
 * listening on a loopback port of its own. Storage lives in a temporary directory, so every broker starts
 * empty.
 *
 * Used by `npm run bench` and by the Node-side interop tests:
 *
 * ```ts
 * const bundle = await bundleWorker();                // once: about 3 s
 * const broker = await startLocalBroker({ bundle });  // then about a second for each broker
 * await fetch(`${broker.url}/.well-known/jwks.json`);
 * await broker.dispose();
 * await bundle.dispose();
 * ```
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  convertV4MiniflareOptions,
  Miniflare,
  type Request as MiniflareRequest,
  type Response as MiniflareResponse,
} from 'miniflare';
import { unstable_getMiniflareWorkerOptions, unstable_splitSqlQuery } from 'wrangler';
import { compilePolicies } from '../policy/compile';

/** The repository root: wrangler.toml, policies/ and migrations/ are found from here. */
export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The import the worker reads its policy from (`worker/policy/loaded.ts`); the bundle substitutes it. */
const POLICY_IMPORT = './bundle.generated.json';

/** A worker bundle written by `wrangler deploy --dry-run`, with the policy it was built from. */
export interface WorkerBundle {
  /** The directory wrangler wrote the bundle to (see {@link bundleModules}). */
  dir: string;
  /** The version (content hash) of the policy bundle compiled into the worker. */
  policyVersion: string;
  /** The upload's size in bytes, modules only, as wrangler reports it. */
  uploadBytes: number;
  /** The gzip size of the upload in bytes, as wrangler reports it (`Total Upload: … / gzip: …`). */
  gzipBytes: number;
  /** Removes the bundle's temporary directory. */
  dispose(): Promise<void>;
}

export interface BundleOptions {
  /** The policy folder to compile into the worker; default `policies/`. */
  policyDir?: string;
  /** wrangler's configuration file; default the project's `wrangler.toml`. */
  config?: string;
}

/** Runs a Node script with this process's Node; resolves with its stdout, rejects with its output on failure. */
function runNode(args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd,
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`node ${args.join(' ')} exited with ${code}:\n${stdout}\n${stderr}`));
    });
  });
}

const WRANGLER_BIN = join(dirname(createRequire(import.meta.url).resolve('wrangler/package.json')), 'bin/wrangler.js');

/** `Total Upload: 5403.38 KiB / gzip: 1625.60 KiB` → bytes, at the precision wrangler prints. */
function uploadSizes(output: string): { uploadBytes: number; gzipBytes: number } {
  const match = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(output);
  if (match === null) throw new Error(`wrangler did not report the upload size:\n${output}`);
  return { uploadBytes: Math.round(Number(match[1]) * 1024), gzipBytes: Math.round(Number(match[2]) * 1024) };
}

export interface WranglerBundleOptions {
  /** wrangler's configuration file. */
  config: string;
  /** Where wrangler writes the bundle (its modules, source map and a README). */
  outDir: string;
  /** Further arguments to `wrangler deploy`. */
  args?: string[];
}

/**
 * Runs `wrangler deploy --dry-run --outdir`: writes the bundle a deploy would upload, uploads nothing.
 *
 * @returns the upload's size and gzip size in bytes, as wrangler reports them.
 */
export async function wranglerBundle(
  options: WranglerBundleOptions,
): Promise<{ uploadBytes: number; gzipBytes: number }> {
  const output = await runNode(
    [
      WRANGLER_BIN,
      'deploy',
      '--dry-run',
      '--outdir',
      options.outDir,
      '--config',
      options.config,
      ...(options.args ?? []),
    ],
    PROJECT_ROOT,
  );
  return uploadSizes(output);
}

/**
 * Bundles the broker with {@link wranglerBundle}: the bundle a deploy uploads, and its size.
 *
 * The policy is compiled from `policyDir` into the temporary directory and substituted for the worker's
 * generated policy import, so the working tree (`worker/policy/bundle.generated.json`) is never written:
 * a benchmark policy cannot leak into a test run or a deploy.
 */
export async function bundleWorker(options: BundleOptions = {}): Promise<WorkerBundle> {
  const root = await mkdtemp(join(tmpdir(), 'tessera-bundle-'));
  try {
    const policy = await compilePolicies(options.policyDir ?? join(PROJECT_ROOT, 'policies'), { forDeploy: false });
    const policyFile = join(root, 'policy.json');
    await writeFile(policyFile, JSON.stringify(policy));
    const dir = join(root, 'worker');
    const sizes = await wranglerBundle({
      config: options.config ?? join(PROJECT_ROOT, 'wrangler.toml'),
      outDir: dir,
      args: ['--alias', `${POLICY_IMPORT}:${policyFile}`],
    });
    // The alias is keyed on the import's exact text: if the worker's import changed, it silently would not
    // apply, and the worker would run with whatever policy the working tree holds.
    const modules = await bundleModules(dir);
    if (!(await readFile(modules[0]?.path ?? '', 'utf8')).includes(policy.version)) {
      throw new Error(
        `the bundle does not hold policy ${policy.version}: did the worker's import of ${POLICY_IMPORT} change?`,
      );
    }
    return { dir, policyVersion: policy.version, ...sizes, dispose: () => rm(root, { recursive: true, force: true }) };
  } catch (error) {
    await rm(root, { recursive: true, force: true });
    throw error;
  }
}

/** A module of a bundle, as Miniflare loads it. */
export interface BundleModule {
  type: 'ESModule' | 'CompiledWasm';
  path: string;
}

/**
 * The modules of a bundle wrangler wrote: its one JavaScript module (the entry) first, then the
 * WebAssembly modules it imports. Anything else wrangler might emit is refused rather than left out.
 */
export async function bundleModules(dir: string): Promise<BundleModule[]> {
  const files = await readdir(dir);
  const scripts = files.filter((file) => file.endsWith('.js'));
  const [entry] = scripts;
  if (entry === undefined || scripts.length > 1) throw new Error(`${dir}: expected one JavaScript module`);
  const modules: BundleModule[] = [{ type: 'ESModule', path: join(dir, entry) }];
  for (const file of files) {
    if (file.endsWith('.wasm')) modules.push({ type: 'CompiledWasm', path: join(dir, file) });
    else if (file !== entry && file !== 'README.md' && !file.endsWith('.map')) {
      throw new Error(`${dir}/${file}: a module type the local broker does not load`);
    }
  }
  return modules;
}

/** A free TCP port on the loopback interface (free when asked; the caller binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address === null || typeof address === 'string') reject(new Error('no TCP port'));
        else resolve(address.port);
      });
    });
  });
}

/** Applies every migration in `migrations/`, in order, as `wrangler d1 migrations apply` would. */
async function applyMigrations(miniflare: Miniflare): Promise<void> {
  const db = await miniflare.getD1Database('AUDIT_DB');
  const folder = join(PROJECT_ROOT, 'migrations');
  const files = (await readdir(folder)).filter((file) => file.endsWith('.sql')).sort();
  for (const file of files) {
    const statements = unstable_splitSqlQuery(await readFile(join(folder, file), 'utf8'));
    await db.batch(statements.map((statement) => db.prepare(statement)));
  }
}

export interface LocalBrokerOptions {
  /** A bundle from {@link bundleWorker}; without one, the broker bundles the worker itself (and disposes it). */
  bundle?: WorkerBundle;
  /** The policy folder, when the broker bundles the worker itself; default `policies/`. */
  policyDir?: string;
  /** The loopback port to listen on; default a free one. */
  port?: number;
  /** Further text bindings (vars and secrets, e.g. `SIGNING_KEY`), over those of wrangler.toml. */
  bindings?: Record<string, string>;
  /**
   * Serves `console/public` as wrangler.toml's `[assets]` says (default true), through Miniflare's emulation
   * of Cloudflare's static-assets router: two more Workers of Miniflare's, on workerd's one thread, in front
   * of the broker for every request. Without it the requests reach the broker itself, as with
   * `run_worker_first` they do on Cloudflare (where the router is the platform's, not the broker's work), and
   * only `/console` cannot be served (500: there is no `ASSETS` binding).
   */
  assets?: boolean;
  /** Opens the V8 inspector on this port, to debug or profile the worker with Chrome DevTools. */
  inspectorPort?: number;
  /**
   * Where the Durable Objects and D1 keep their SQLite files: a fresh directory is made in it and removed on
   * dispose. Default: Miniflare's own temporary directory, on disk. A tmpfs (`/dev/shm`) keeps them in memory.
   */
  storageRoot?: string;
  /**
   * Answers the worker's outbound `fetch` calls (a trusted issuer's JWKS, the Cloudflare Access team's
   * certs); without it they go to the network.
   */
  outboundService?: (request: MiniflareRequest) => MiniflareResponse | Promise<MiniflareResponse>;
}

export interface AuditFilter {
  event?: string;
  decision?: 'granted' | 'refused';
}

export interface LocalBroker {
  /** The broker's URL, `http://127.0.0.1:<port>`: also its `ISSUER`, so attestations name it as `aud`. */
  url: string;
  /** The Miniflare instance, for direct access to bindings (`getD1Database('AUDIT_DB')`, Durable Objects). */
  miniflare: Miniflare;
  /** How many audit records D1 holds, optionally only those of one event and decision. */
  auditRecordCount(filter?: AuditFilter): Promise<number>;
  /** Stops workerd and removes its storage (and the bundle, if the broker made it). */
  dispose(): Promise<void>;
}

/**
 * Starts the broker on Miniflare, listening on `127.0.0.1`, with the bindings of wrangler.toml, `ISSUER` set
 * to its own URL, and the D1 migrations applied. Resolves once it answers requests.
 */
export async function startLocalBroker(options: LocalBrokerOptions = {}): Promise<LocalBroker> {
  if (options.bundle !== undefined && options.policyDir !== undefined) {
    throw new TypeError('give a bundle or a policy folder to bundle, not both');
  }
  // What dispose undoes, last made first undone; a start that fails undoes what it made.
  const made: (() => Promise<void>)[] = [];
  const dispose = async () => {
    for (let undo = made.pop(); undo !== undefined; undo = made.pop()) await undo();
  };
  try {
    let { bundle } = options;
    if (bundle === undefined) {
      const own = await bundleWorker({ ...(options.policyDir && { policyDir: options.policyDir }) });
      made.push(() => own.dispose());
      bundle = own;
    }
    let storage: string | undefined;
    if (options.storageRoot !== undefined) {
      const dir = await mkdtemp(join(options.storageRoot, 'tessera-storage-'));
      made.push(() => rm(dir, { recursive: true, force: true }));
      storage = dir;
    }
    const port = options.port ?? (await freePort());
    const url = `http://127.0.0.1:${port}`;
    // wrangler.toml's bindings, Durable Objects and compatibility settings; the modules are wrangler's output.
    const { modulesRules: _rules, ...workerOptions } = unstable_getMiniflareWorkerOptions(
      join(PROJECT_ROOT, 'wrangler.toml'),
    ).workerOptions;
    // wrangler's declared type (an `Omit` over an index signature) has lost the shape of `bindings`.
    const configured = workerOptions.bindings as Record<string, unknown> | undefined;
    const miniflare = new Miniflare(
      convertV4MiniflareOptions({
        ...workerOptions,
        ...(options.assets === false && { assets: undefined }),
        name: 'tessera',
        modules: await bundleModules(bundle.dir),
        modulesRoot: bundle.dir,
        bindings: { ...configured, ISSUER: url, ...options.bindings },
        // Requests reach the worker on a socket of its own, as under `workerd serve`, not through Miniflare's
        // entry worker (a development proxy, about a quarter of a small worker's time per request).
        unsafeDirectSockets: [{ host: '127.0.0.1', port }],
        host: '127.0.0.1',
        port: 0,
        ...(options.inspectorPort !== undefined && { inspectorPort: options.inspectorPort }),
        ...(options.outboundService !== undefined && { outboundService: options.outboundService }),
        ...(storage !== undefined && { resourcePersistencePath: storage }),
        // Offline: do not fetch the `request.cf` template from the network.
        cf: false,
      }),
    );
    made.push(() => miniflare.dispose());
    await miniflare.ready;
    await applyMigrations(miniflare);
    return {
      url,
      miniflare,
      async auditRecordCount(filter: AuditFilter = {}) {
        const db = await miniflare.getD1Database('AUDIT_DB');
        const row = await db
          .prepare(
            'SELECT count(*) AS n FROM audit_events WHERE (?1 IS NULL OR event = ?1) AND (?2 IS NULL OR decision = ?2)',
          )
          .bind(filter.event ?? null, filter.decision ?? null)
          .first<{ n: number }>();
        return row?.n ?? 0;
      },
      dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
}
