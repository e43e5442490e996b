/**
 * @tessera/agent's attestation sources against the real broker: the demo agent's self-signed key from a
 * file, the environment, a JWK and a `CryptoKey`; GitHub Actions OIDC from a stand-in runner; a Kubernetes
 * projected token file, a SPIFFE JWT-SVID file and OIDC tokens from a file and a callback, signed by the
 * stand-in issuers the global setup serves the JWKS of; and sources that cannot attest.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AttestationSource,
  createTessera,
  githubActions,
  kubernetes,
  oidcToken,
  selfSigned,
  spiffeJwtSvid,
} from '@tessera/agent';
import { decodeJwt, importJWK, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DEMO_AGENT, DEMO_KEY_FILE, errorOf, TICKETS } from './demo';
import { issuerToken } from './issuers';

const broker = inject('agentBrokerUrl');
const keys = inject('issuerKeys');
const GRAPH = 'https://graph.example.com';
const TASK = { description: 'Refresh the read models of the security graph' };

/** The token `attestation` gets for `scope` on `audience`, in a task of its own. */
async function tokenWith(attestation: AttestationSource, audience: string, scope: string) {
  const task = await createTessera({ broker, attestation }).task(TASK);
  return task.token({ audience, scope });
}

/** A Kubernetes projected service-account token of graph-indexer, for the broker. */
const graphIndexerToken = () =>
  issuerToken(keys.kubernetes, 'kubernetes', { sub: 'system:serviceaccount:agents:graph-indexer', aud: broker });

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tessera-agent-attestation-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('selfSigned', () => {
  const demoJwk = async () => {
    const { _comment, ...jwk } = JSON.parse(await readFile(DEMO_KEY_FILE, 'utf8')) as JWK & { _comment?: string };
    return jwk;
  };

  it('signs with a JWK from the environment', async () => {
    process.env.TESSERA_AGENT_TEST_KEY = JSON.stringify(await demoJwk());
    const attestation = selfSigned({ agent: DEMO_AGENT, key: { env: 'TESSERA_AGENT_TEST_KEY' } });
    expect((await tokenWith(attestation, TICKETS, 'tickets:read')).scope).toBe('tickets:read');
    delete process.env.TESSERA_AGENT_TEST_KEY;
  });

  it('signs with a JWK given as it is, and with a non-extractable CryptoKey', async () => {
    const jwk = await demoJwk();
    const key = await importJWK(jwk, 'ES256', { extractable: false });
    if (!(key instanceof CryptoKey)) throw new TypeError('an EC JWK imports as a CryptoKey');
    for (const attestation of [
      selfSigned({ agent: DEMO_AGENT, key: jwk }),
      selfSigned({ agent: DEMO_AGENT, key: { key, kid: jwk.kid as string } }),
    ])
      expect(decodeJwt((await tokenWith(attestation, TICKETS, 'tickets:read')).accessToken).sub).toBe(DEMO_AGENT);
  });

  it('is attestation_unavailable when the key file cannot be read', async () => {
    const attestation = selfSigned({ agent: DEMO_AGENT, key: { file: join(dir, 'missing.jwk.json') } });
    expect(await errorOf(tokenWith(attestation, TICKETS, 'tickets:read'))).toMatchObject({
      code: 'attestation_unavailable',
    });
  });
});

describe('githubActions', () => {
  /** A stand-in for the runner's ID token service: `?audience=`, a bearer request token, `{ value }`. */
  let runner: { url: string; audiences: string[]; close(): void };
  const REQUEST_TOKEN = 'runner-request-token';
  beforeAll(async () => {
    const audiences: string[] = [];
    const server = createServer(async (request, response) => {
      if (request.headers.authorization !== `Bearer ${REQUEST_TOKEN}`) return response.writeHead(403).end();
      const audience = new URL(request.url ?? '/', 'http://runner').searchParams.get('audience') ?? '';
      audiences.push(audience);
      const value = await issuerToken(keys.github, 'github', {
        sub: 'repo:acme/deployer:ref:refs/heads/main',
        aud: audience,
        repository_owner: 'acme',
        workflow_ref: 'acme/deployer/.github/workflows/release.yml@refs/heads/main',
      });
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ value }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/_apis/oidctoken?api-version=2.0`;
    runner = { url, audiences, close: () => server.close() };
  });
  afterAll(() => runner.close());

  it('asks the runner for a fresh ID token for the broker at every exchange (env defaults)', async () => {
    process.env.ACTIONS_ID_TOKEN_REQUEST_URL = runner.url;
    process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN = REQUEST_TOKEN;
    const task = await createTessera({ broker, attestation: githubActions() }).task(TASK);
    await task.token({ audience: TICKETS, scope: 'tickets:comment' });
    const token = await task.token({ audience: TICKETS, scope: 'tickets:comment', ttl: 60 });
    expect(decodeJwt(token.accessToken)).toMatchObject({ sub: 'release-bot', aud: TICKETS });
    expect(runner.audiences).toEqual([broker]);
    await task.revoke({ audience: TICKETS, scope: 'tickets:comment' });
    await task.token({ audience: TICKETS, scope: 'tickets:comment' });
    expect(runner.audiences).toEqual([broker, broker]);
    delete process.env.ACTIONS_ID_TOKEN_REQUEST_URL;
    delete process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
  });

  it('is attestation_unavailable when the runner refuses', async () => {
    const attestation = githubActions({ requestUrl: runner.url, requestToken: 'wrong' });
    expect(await errorOf(tokenWith(attestation, TICKETS, 'tickets:comment'))).toMatchObject({
      code: 'attestation_unavailable',
    });
  });
});

describe('kubernetes', () => {
  it('reads the projected token file at every exchange, as the kubelet renews it', async () => {
    const path = join(dir, 'kubernetes-token');
    const task = await createTessera({ broker, attestation: kubernetes({ path }) }).task(TASK);
    await writeFile(path, await graphIndexerToken());
    const first = await task.token({ audience: GRAPH, scope: 'graph:read' });
    expect(decodeJwt(first.accessToken)).toMatchObject({ sub: 'graph-indexer', aud: GRAPH });
    await task.revoke({ audience: GRAPH, scope: 'graph:read' });
    // The same token again is a replayed attestation; the renewed file is accepted.
    expect(await errorOf(task.token({ audience: GRAPH, scope: 'graph:read' }))).toMatchObject({
      code: 'invalid_grant',
    });
    await writeFile(path, await graphIndexerToken());
    expect((await task.token({ audience: GRAPH, scope: 'graph:read' })).scope).toBe('graph:read');
  });

  it('is attestation_unavailable when the file is empty', async () => {
    const path = join(dir, 'empty-token');
    await writeFile(path, '\n');
    expect(await errorOf(tokenWith(kubernetes({ path }), GRAPH, 'graph:read'))).toMatchObject({
      code: 'attestation_unavailable',
    });
  });
});

describe('spiffeJwtSvid', () => {
  it('reads the JWT-SVID spiffe-helper wrote, and gets the DPoP-bound token the agent must hold', async () => {
    const path = join(dir, 'svid.jwt');
    const svid = await issuerToken(keys.spire, 'spire', {
      sub: 'spiffe://acme.example/agents/attack-path-scanner',
      aud: broker,
    });
    await writeFile(path, `${svid}\n`);
    const token = await tokenWith(spiffeJwtSvid({ path }), GRAPH, 'graph:read');
    expect(token.tokenType).toBe('DPoP');
    expect(decodeJwt(token.accessToken)).toMatchObject({
      sub: 'attack-path-scanner',
      cnf: { jkt: expect.any(String) },
    });
  });
});

describe('oidcToken', () => {
  it('takes a fresh token from a callback, told the broker as the audience', async () => {
    const audiences: string[] = [];
    const attestation = oidcToken({
      token: ({ audience }) => {
        audiences.push(audience);
        return graphIndexerToken();
      },
    });
    expect(decodeJwt((await tokenWith(attestation, GRAPH, 'graph:read')).accessToken).sub).toBe('graph-indexer');
    expect(audiences).toEqual([broker]);
  });

  it('reads a token from a file', async () => {
    const file = join(dir, 'oidc-token');
    await writeFile(file, await graphIndexerToken());
    expect((await tokenWith(oidcToken({ file }), GRAPH, 'graph:read')).scope).toBe('graph:read');
  });

  it('is attestation_unavailable when the callback fails', async () => {
    const attestation = oidcToken({
      token: () => {
        throw new Error('the identity provider is down');
      },
    });
    expect(await errorOf(tokenWith(attestation, GRAPH, 'graph:read'))).toMatchObject({
      code: 'attestation_unavailable',
      cause: new Error('the identity provider is down'),
    });
  });
});
