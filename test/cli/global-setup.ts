/**
 * Two real brokers for the CLI tests, from one bundle of the worker, on workerd over loopback: one shared by
 * the tests that only add (tokens, approvals, revocations, audit), and one for the tests that stop issuance
 * for everyone (kill switch, suspending the demo agent), so that they cannot refuse another file's tokens.
 * Their policy polls approvals every second instead of every five, to keep the step-up tests short.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { bundleWorker, PROJECT_ROOT, startLocalBroker } from '../../scripts/lib/local-broker';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A broker for the tests that only add to its state. */
    cliBrokerUrl: string;
    /** A broker of its own for the tests that engage the kill switch or suspend the demo agent. */
    cliStopBrokerUrl: string;
  }
}

/** A copy of `policies/` whose approvals may be polled every second. */
async function fastPollPolicies(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-cli-policies-'));
  await cp(join(PROJECT_ROOT, 'policies'), dir, { recursive: true });
  const settings = join(dir, 'tessera.yaml');
  const text = await readFile(settings, 'utf8');
  const fast = text.replace(/^(\s+poll_interval:) \d+\b/m, '$1 1');
  if (fast === text) throw new Error('policies/tessera.yaml: no "poll_interval:" under approvals to shorten');
  await writeFile(settings, fast);
  return dir;
}

export default async function setup(project: TestProject) {
  const policyDir = await fastPollPolicies();
  const bundle = await bundleWorker({ policyDir });
  const [broker, stopBroker] = await Promise.all([startLocalBroker({ bundle }), startLocalBroker({ bundle })]);
  project.provide('cliBrokerUrl', broker.url);
  project.provide('cliStopBrokerUrl', stopBroker.url);
  return async () => {
    await Promise.all([broker.dispose(), stopBroker.dispose()]);
    await bundle.dispose();
    await rm(policyDir, { recursive: true, force: true });
  };
}
