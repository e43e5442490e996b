/**
 * Two real brokers for the @tessera/agent tests, on workerd over loopback, with stand-ins for the trusted
 * workload-identity issuers of `policies/issuers.yaml`: this setup makes a key for GitHub Actions, Kubernetes
 * and SPIRE each and answers their `jwks_uri` with it, so the tests sign those issuers' tokens. Their policy
 * polls approvals every second and lets one wait 8 seconds (more than a poll after a slow_down), to keep the
 * step-up tests short, and lets each agent ask 50 times as often; the second broker also requires DPoP nonces.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { Response } from 'miniflare';
import type { TestProject } from 'vitest/node';
import { bundleWorker, PROJECT_ROOT, startLocalBroker } from '../../scripts/lib/local-broker';
import { ISSUERS, type IssuerName } from './issuers';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The broker as `policies/` configures it, but approvals polled every second and expiring after 8. */
    agentBrokerUrl: string;
    /** The same broker with `dpop.nonce: true`. */
    agentNonceBrokerUrl: string;
    /** The private keys of the stand-in issuers, with their `kid` and `alg`. */
    issuerKeys: Record<IssuerName, JWK>;
  }
}

/** Replaces one setting in the copy of `tessera.yaml`; fails when the setting is not there to replace. */
function setting(text: string, pattern: RegExp, value: string): string {
  const changed = text.replace(pattern, `$1 ${value}`);
  if (changed === text) throw new Error(`policies/tessera.yaml: no ${pattern} to change`);
  return changed;
}

/** A copy of `policies/` with fast, short approvals, a roomy rate limit, and (with `nonce`) DPoP nonces required. */
async function testPolicies(nonce: boolean): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-agent-policies-'));
  await cp(join(PROJECT_ROOT, 'policies'), dir, { recursive: true });
  const file = join(dir, 'tessera.yaml');
  let text = await readFile(file, 'utf8');
  text = setting(text, /^(\s+poll_interval:) \d+\b/m, '1');
  // Long enough for the slow_down test's 6 s wait on a loaded machine, short enough to wait out an expiry.
  text = setting(text, /^(\s+expires_in:) \d+\b/m, '15');
  // The files run side by side, most as the demo agent: a burst of 20 would refuse some of them slow_down.
  text = setting(text, /^(\s+per_minute:) \d+\b/m, '6000');
  text = setting(text, /^(\s+burst:) \d+\b/m, '1000');
  if (nonce) text = setting(text, /^(\s+nonce:) false\b/m, 'true');
  await writeFile(file, text);
  return dir;
}

export default async function setup(project: TestProject) {
  const names = Object.keys(ISSUERS) as IssuerName[];
  const pairs = await Promise.all(
    names.map(async (name) => {
      const { alg } = ISSUERS[name];
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      const kid = `agent-tests-${name}`;
      return {
        name,
        privateJwk: { ...(await exportJWK(privateKey)), kid, alg },
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }] },
      };
    }),
  );
  const jwksByUrl = new Map<string, { keys: JWK[] }>(pairs.map((pair) => [ISSUERS[pair.name].jwksUri, pair.jwks]));
  const outboundService = (request: { url: string }) => {
    const jwks = jwksByUrl.get(request.url);
    if (jwks !== undefined) return Response.json(jwks);
    return new Response(`the agent tests serve no ${request.url}`, { status: 404 });
  };
  const policyDirs = await Promise.all([testPolicies(false), testPolicies(true)]);
  const bundles = await Promise.all(policyDirs.map((policyDir) => bundleWorker({ policyDir })));
  const [broker, nonceBroker] = await Promise.all(
    bundles.map((bundle) => startLocalBroker({ bundle, assets: false, outboundService })),
  );
  if (broker === undefined || nonceBroker === undefined) throw new Error('a local broker did not start');
  project.provide('agentBrokerUrl', broker.url);
  project.provide('agentNonceBrokerUrl', nonceBroker.url);
  project.provide(
    'issuerKeys',
    Object.fromEntries(pairs.map((pair) => [pair.name, pair.privateJwk])) as Record<IssuerName, JWK>,
  );
  return async () => {
    await Promise.all([broker.dispose(), nonceBroker.dispose()]);
    await Promise.all(bundles.map((bundle) => bundle.dispose()));
    await Promise.all(policyDirs.map((dir) => rm(dir, { recursive: true, force: true })));
  };
}
