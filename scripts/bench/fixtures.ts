/**
 * What the benchmark sends: bench agents declared in a copy of `policies/` (each with its own id and key,
 * and a rate limit that does not throttle the run), and pools of request bodies signed ahead of the run,
 * one per request, so that no signing happens on the load generator's clock and no attestation is sent
 * twice.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { isSeq, parseDocument } from 'yaml';
import { JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT as TOKEN_EXCHANGE } from '../../worker/core/token-request';
import { PROJECT_ROOT } from '../lib/local-broker';

/** The agent of the one-agent runs; also the peers' client id. */
export const BENCH_AGENT = 'bench-agent';
/** The API the tokens are for, and the actions asked for: granted to agents labelled `support`. */
export const AUDIENCE = 'https://tickets.example.com';
export const SCOPE = 'tickets:read tickets:comment';
const TASK = JSON.stringify({ description: 'Summarise ticket T-1234 and post the summary as a comment' });
/** Lifetime of attestations and client assertions: the broker's maximum attestation age. */
const ASSERTION_LIFETIME = 300;
/** Signatures in flight at once while filling a pool (Node signs on its thread pool). */
const SIGNING_BATCH = 512;

export interface BenchAgent {
  id: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/** A bench agent with a fresh ES256 key pair. */
export async function benchAgent(id = BENCH_AGENT): Promise<BenchAgent> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return {
    id,
    privateKey,
    publicJwk: { ...(await exportJWK(publicKey)), kid: `${id}-1`, alg: 'ES256', use: 'sig' },
  };
}

/** `count` bench agents, `bench-agent-0001` and on, each with its own key (and so its own Durable Object). */
export function benchAgents(count: number): Promise<BenchAgent[]> {
  const width = String(count).length;
  return Promise.all(
    Array.from({ length: count }, (_, index) => benchAgent(`${BENCH_AGENT}-${String(index + 1).padStart(width, '0')}`)),
  );
}

/**
 * A bench agent's entry in `agents.yaml`: labelled `support` (so the tickets grant applies, as to the demo
 * agent) and with its own rate limit at the compiler's maximum, far above what one machine issues, so the run
 * measures issuance rather than throttling.
 */
function benchEntry(agent: BenchAgent): Record<string, unknown> {
  return {
    id: agent.id,
    owner: 'bench@example.com',
    description: 'Sends the requests of npm run bench',
    labels: ['support'],
    rate_limit: { per_minute: 600_000, burst: 10_000 },
    attestation: { self_signed: { keys: [agent.publicJwk] } },
  };
}

/**
 * A copy of `policies/` in a temporary directory with `agents` added, each as `entry` says (by default
 * {@link benchEntry}; the n-th of them is `n`). The copy keeps `admins.yaml`, so the demo admin credential
 * (`scripts/demo/admin-credentials.json`) works on it.
 */
export async function benchPolicies(
  agents: BenchAgent[],
  entry: (agent: BenchAgent, n: number) => Record<string, unknown> = benchEntry,
): Promise<{ dir: string; dispose(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-bench-policies-'));
  await cp(join(PROJECT_ROOT, 'policies'), dir, { recursive: true });
  const file = join(dir, 'agents.yaml');
  const document = parseDocument(await readFile(file, 'utf8'));
  const inventory = document.get('agents');
  if (!isSeq(inventory)) throw new Error('policies/agents.yaml: expected a list under `agents`');
  for (const [n, agent] of agents.entries()) inventory.add(document.createNode(entry(agent, n)));
  await writeFile(file, document.toString());
  return { dir, dispose: () => rm(dir, { recursive: true, force: true }) };
}

/** Calls `make` `count` times, a batch at a time. */
async function fill(count: number, make: () => Promise<string>): Promise<string[]> {
  const out: string[] = [];
  while (out.length < count) {
    const batch = Math.min(SIGNING_BATCH, count - out.length);
    out.push(...(await Promise.all(Array.from({ length: batch }, make))));
  }
  return out;
}

/** Makes `count` request bodies at a time; successive calls go on where the last one stopped. */
export type BodyMaker = (count: number) => Promise<string[]>;

/** A signed JWT with `iss` = `sub` = the agent, for `audience`, valid from now, with a fresh `jti`. */
function assertion(agent: BenchAgent, audience: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: agent.publicJwk.kid ?? '' })
    .setIssuer(agent.id)
    .setSubject(agent.id)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime(`${ASSERTION_LIFETIME}s`)
    .setJti(crypto.randomUUID())
    .sign(agent.privateKey);
}

/**
 * RFC 8693 token-exchange bodies for Tessera's `/token`, form-encoded (the RFC's encoding, as an
 * off-the-shelf OAuth client sends it), each with its own self-signed attestation naming `issuer`, from
 * `agents` in turn (so load over many agents spreads over their Durable Objects).
 */
export function exchangeBodies(agents: readonly BenchAgent[], issuer: string): BodyMaker {
  let next = 0;
  return (count) =>
    fill(count, async () => {
      const agent = agents[next++ % agents.length];
      if (agent === undefined) throw new TypeError('no bench agent to sign with');
      return new URLSearchParams({
        grant_type: TOKEN_EXCHANGE,
        subject_token: await assertion(agent, issuer),
        subject_token_type: JWT_TOKEN_TYPE,
        audience: AUDIENCE,
        scope: SCOPE,
        task: TASK,
      }).toString();
    });
}

/**
 * RFC 6749 §4.4 `client_credentials` bodies for the peers, each authenticated by its own `private_key_jwt`
 * client assertion (RFC 7523, `aud` = the token endpoint) and naming the API by a resource indicator
 * (RFC 8707).
 */
export function clientCredentialsBodies(agent: BenchAgent, tokenEndpoint: string): BodyMaker {
  return (count) =>
    fill(count, async () =>
      new URLSearchParams({
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await assertion(agent, tokenEndpoint),
        resource: AUDIENCE,
        scope: SCOPE,
      }).toString(),
    );
}
