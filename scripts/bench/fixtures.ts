/**
 * What the benchmark sends: a bench agent declared in a copy of `policies/` (its own key, a rate limit
 * that does not throttle the run), and pools of request bodies signed ahead of the run, one per request,
 * so that no signing happens on the load generator's clock and no attestation is sent twice.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { isSeq, parseDocument } from 'yaml';
import { JWT_TOKEN_TYPE, TOKEN_EXCHANGE } from '../lib/agent';
import { PROJECT_ROOT } from '../lib/local-broker';

/** The agent every benchmark request comes from; also the peer's client id. */
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
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/** A fresh ES256 key pair for the bench agent. */
export async function benchAgent(): Promise<BenchAgent> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return {
    privateKey,
    publicJwk: { ...(await exportJWK(publicKey)), kid: `${BENCH_AGENT}-1`, alg: 'ES256', use: 'sig' },
  };
}

/**
 * A copy of `policies/` in a temporary directory with the bench agent added: labelled `support` (so the
 * tickets grant applies, as to the demo agent) and with its own rate limit at the compiler's maximum, far
 * above what one machine issues, so the run measures issuance rather than throttling.
 */
export async function benchPolicies(agent: BenchAgent): Promise<{ dir: string; dispose(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-bench-policies-'));
  await cp(join(PROJECT_ROOT, 'policies'), dir, { recursive: true });
  const file = join(dir, 'agents.yaml');
  const document = parseDocument(await readFile(file, 'utf8'));
  const agents = document.get('agents');
  if (!isSeq(agents)) throw new Error('policies/agents.yaml: expected a list under `agents`');
  agents.add(
    document.createNode({
      id: BENCH_AGENT,
      owner: 'bench@example.com',
      description: 'Sends the requests of npm run bench',
      labels: ['support'],
      rate_limit: { per_minute: 600_000, burst: 10_000 },
      attestation: { self_signed: { keys: [agent.publicJwk] } },
    }),
  );
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

/** A signed JWT with `iss` = `sub` = the bench agent, for `audience`, valid from now, with a fresh `jti`. */
function assertion(agent: BenchAgent, audience: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: agent.publicJwk.kid ?? '' })
    .setIssuer(BENCH_AGENT)
    .setSubject(BENCH_AGENT)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime(`${ASSERTION_LIFETIME}s`)
    .setJti(crypto.randomUUID())
    .sign(agent.privateKey);
}

/**
 * `count` RFC 8693 token-exchange bodies for Tessera's `/token`, form-encoded (the RFC's encoding, as an
 * off-the-shelf OAuth client sends it), each with its own self-signed attestation naming `issuer`.
 */
export function exchangeBodies(agent: BenchAgent, issuer: string, count: number): Promise<string[]> {
  return fill(count, async () =>
    new URLSearchParams({
      grant_type: TOKEN_EXCHANGE,
      subject_token: await assertion(agent, issuer),
      subject_token_type: JWT_TOKEN_TYPE,
      audience: AUDIENCE,
      scope: SCOPE,
      task: TASK,
    }).toString(),
  );
}

/**
 * `count` RFC 6749 §4.4 `client_credentials` bodies for the peer, each authenticated by its own
 * `private_key_jwt` client assertion (RFC 7523, `aud` = the token endpoint) and naming the API by a
 * resource indicator (RFC 8707).
 */
export function clientCredentialsBodies(agent: BenchAgent, tokenEndpoint: string, count: number): Promise<string[]> {
  return fill(count, async () =>
    new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await assertion(agent, tokenEndpoint),
      resource: AUDIENCE,
      scope: SCOPE,
    }).toString(),
  );
}
