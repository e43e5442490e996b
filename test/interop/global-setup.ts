/**
 * Starts the real worker bundle on workerd (Miniflare, no wrangler proxy) once for the interop tests, and
 * a second one whose policy requires DPoP nonces; tests reach them over HTTP on loopback. Under
 * `npm run test:next-year` both bundles run with their clock as far ahead as the tests' (test/clock/).
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import {
  bundleModules,
  bundleWorker,
  PROJECT_ROOT,
  startLocalBroker,
  type WorkerBundle,
} from '../../scripts/lib/local-broker';
import { shiftClock } from '../clock/offset';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The broker as configured in `policies/`. */
    brokerUrl: string;
    /** The same broker with `dpop.nonce: true`: every DPoP proof must carry a nonce it issued. */
    nonceBrokerUrl: string;
  }
}

/** A copy of `policies/` with DPoP nonces required. */
async function noncePolicies(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-nonce-policies-'));
  await cp(join(PROJECT_ROOT, 'policies'), dir, { recursive: true });
  const settings = join(dir, 'tessera.yaml');
  const text = await readFile(settings, 'utf8');
  const required = text.replace(/^(\s+nonce:) false\b/m, '$1 true');
  if (required === text) throw new Error('policies/tessera.yaml: no "nonce: false" under dpop to turn on');
  await writeFile(settings, required);
  return dir;
}

/**
 * Runs `shiftClock(offsetMs)` first in the bundle's entry module, so the broker's clock is as far ahead as
 * the tests'. The module's own imports (workerd's built-in modules, Cedar's WebAssembly) read no time.
 */
async function runClockAhead(bundle: WorkerBundle, offsetMs: number): Promise<void> {
  if (offsetMs === 0) return;
  const [entry] = await bundleModules(bundle.dir);
  if (entry === undefined) throw new Error(`${bundle.dir}: no entry module`);
  const source = await readFile(entry.path, 'utf8');
  await writeFile(entry.path, `(${shiftClock.toString()})(${offsetMs});\n${source}`);
}

export default async function setup(project: TestProject) {
  const policyDir = await noncePolicies();
  const bundles = await Promise.all([bundleWorker(), bundleWorker({ policyDir })]);
  const offsetMs = project.getProvidedContext().clockOffsetMs;
  await Promise.all(bundles.map((bundle) => runClockAhead(bundle, offsetMs)));
  const [broker, nonceBroker] = await Promise.all(bundles.map((bundle) => startLocalBroker({ bundle })));
  if (broker === undefined || nonceBroker === undefined) throw new Error('a local broker did not start');
  project.provide('brokerUrl', broker.url);
  project.provide('nonceBrokerUrl', nonceBroker.url);
  return async () => {
    await Promise.all([broker.dispose(), nonceBroker.dispose()]);
    await Promise.all(bundles.map((bundle) => bundle.dispose()));
    await rm(policyDir, { recursive: true, force: true });
  };
}
