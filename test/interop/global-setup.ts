/**
 * Starts the real worker bundle on workerd (Miniflare, no wrangler proxy) once for the interop tests, and
 * a second one whose policy requires DPoP nonces; tests reach them over HTTP on loopback.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { PROJECT_ROOT, startLocalBroker } from '../../scripts/lib/local-broker';

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

export default async function setup(project: TestProject) {
  const policyDir = await noncePolicies();
  const [broker, nonceBroker] = await Promise.all([startLocalBroker(), startLocalBroker({ policyDir })]);
  project.provide('brokerUrl', broker.url);
  project.provide('nonceBrokerUrl', nonceBroker.url);
  return async () => {
    await Promise.all([broker.dispose(), nonceBroker.dispose()]);
    await rm(policyDir, { recursive: true, force: true });
  };
}
