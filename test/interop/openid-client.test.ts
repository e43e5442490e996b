/**
 * panva's openid-client, an OAuth client nobody here wrote, against the real broker over HTTP: discovery
 * from the RFC 8414 metadata, the RFC 8693 exchange in the form encoding, DPoP proofs and nonces from its
 * own implementation (oauth4webapi), RFC 7662 introspection as an API authenticated with client_secret_basic,
 * and a DPoP-protected call to an API guarded by `@tessera/verify`.
 */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type AgentVariables, requireAgent } from '@tessera/verify/hono';
import { Hono } from 'hono';
import { calculateJwkThumbprint, decodeJwt, exportJWK } from 'jose';
import * as client from 'openid-client';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { PROJECT_ROOT } from '../../scripts/lib/local-broker';
import { AGENT, exchangeParameters, TICKETS, TOKEN_EXCHANGE } from './agent';

const brokerUrl = inject('brokerUrl');
const nonceBrokerUrl = inject('nonceBrokerUrl');

/** openid-client's view of a broker: discovered, a public client (`client_id` = the agent), plain HTTP allowed. */
function discover(broker: string): Promise<client.Configuration> {
  return client.discovery(new URL(broker), AGENT, undefined, client.None(), {
    algorithm: 'oauth2',
    execute: [client.allowInsecureRequests],
  });
}

async function thumbprintOf(keyPair: client.CryptoKeyPair): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(keyPair.publicKey), 'sha256');
}

describe('openid-client: RFC 8414 discovery', () => {
  it('discovers the endpoints, the token-exchange grant and the DPoP algorithms', async () => {
    const metadata = (await discover(brokerUrl)).serverMetadata();
    expect(metadata).toMatchObject({
      issuer: brokerUrl,
      token_endpoint: `${brokerUrl}/token`,
      jwks_uri: `${brokerUrl}/.well-known/jwks.json`,
      introspection_endpoint: `${brokerUrl}/introspect`,
      revocation_endpoint: `${brokerUrl}/revoke`,
    });
    expect(metadata.grant_types_supported).toContain(TOKEN_EXCHANGE);
    expect(metadata.dpop_signing_alg_values_supported).toEqual(expect.arrayContaining(['ES256', 'EdDSA']));
  });
});

describe('openid-client: RFC 8693 token exchange', () => {
  let config: client.Configuration;
  beforeAll(async () => {
    config = await discover(brokerUrl);
  });

  it('exchanges an attestation for a bearer token scoped to the task', async () => {
    const tokens = await client.genericGrantRequest(config, TOKEN_EXCHANGE, await exchangeParameters(brokerUrl));
    expect(tokens.token_type).toBe('bearer');
    expect(tokens).toMatchObject({
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      scope: 'tickets:comment',
    });
    expect(tokens.expiresIn()).toBeGreaterThan(0);
    expect(decodeJwt(tokens.access_token)).toMatchObject({ iss: brokerUrl, sub: AGENT, aud: TICKETS });
  });

  it('surfaces a refusal as the OAuth error the spec names', async () => {
    const parameters = await exchangeParameters(brokerUrl, 'tickets:delete');
    const refusal = await client.genericGrantRequest(config, TOKEN_EXCHANGE, parameters).catch((error) => error);
    expect(refusal).toBeInstanceOf(client.ResponseBodyError);
    expect(refusal).toMatchObject({ error: 'invalid_scope', status: 400 });
  });

  it('binds the token to the key of its own DPoP proof (RFC 9449)', async () => {
    const keyPair = await client.randomDPoPKeyPair('ES256');
    const tokens = await client.genericGrantRequest(config, TOKEN_EXCHANGE, await exchangeParameters(brokerUrl), {
      DPoP: client.getDPoPHandle(config, keyPair),
    });
    expect(tokens.token_type).toBe('dpop');
    expect(decodeJwt(tokens.access_token).cnf).toEqual({ jkt: await thumbprintOf(keyPair) });
  });

  it('accepts EdDSA DPoP proofs', async () => {
    const keyPair = await client.randomDPoPKeyPair('EdDSA');
    const tokens = await client.genericGrantRequest(config, TOKEN_EXCHANGE, await exchangeParameters(brokerUrl), {
      DPoP: client.getDPoPHandle(config, keyPair),
    });
    expect(decodeJwt(tokens.access_token).cnf).toEqual({ jkt: await thumbprintOf(keyPair) });
  });
});

describe('openid-client: RFC 7662 introspection as an API (client_secret_basic)', () => {
  /** openid-client's view of the broker as the tickets API, with the demo API's credential. */
  async function asApi(audience: string, credential: string): Promise<client.Configuration> {
    return client.discovery(new URL(brokerUrl), audience, undefined, client.ClientSecretBasic(credential), {
      algorithm: 'oauth2',
      execute: [client.allowInsecureRequests],
    });
  }

  it('introspects a token of its own audience, and a token is inactive to another API', async () => {
    const credentials = JSON.parse(
      await readFile(join(PROJECT_ROOT, 'scripts/demo/introspection-credentials.json'), 'utf8'),
    ) as Record<string, string>;
    const agent = await discover(brokerUrl);
    const { access_token: token } = await client.genericGrantRequest(
      agent,
      TOKEN_EXCHANGE,
      await exchangeParameters(brokerUrl),
    );
    const tickets = await asApi(TICKETS, credentials[TICKETS] ?? '');
    expect(await client.tokenIntrospection(tickets, token)).toMatchObject({ active: true, aud: TICKETS, sub: AGENT });
    const graph = await asApi('https://graph.example.com', credentials['https://graph.example.com'] ?? '');
    expect(await client.tokenIntrospection(graph, token)).toEqual({ active: false });
    const refused = await client.tokenIntrospection(await asApi(TICKETS, 'wrong'), token).catch((error) => error);
    // A 401 with a Basic challenge (RFC 6749 §5.2), which openid-client surfaces as the challenge.
    expect(refused).toBeInstanceOf(client.WWWAuthenticateChallengeError);
    expect(refused).toMatchObject({ status: 401, cause: [{ scheme: 'basic' }] });
  });
});

describe('openid-client: DPoP nonces (RFC 9449 §8)', () => {
  it('answers the use_dpop_nonce challenge by itself, and reuses the nonce it was given', async () => {
    const config = await discover(nonceBrokerUrl);
    const keyPair = await client.randomDPoPKeyPair('ES256');
    const DPoP = client.getDPoPHandle(config, keyPair);
    const proofs: string[] = [];
    config[client.customFetch] = (url, options) => {
      const proof = new Headers(options.headers).get('dpop');
      if (proof !== null) proofs.push(proof);
      return fetch(url, options as RequestInit);
    };
    const first = await client.genericGrantRequest(config, TOKEN_EXCHANGE, await exchangeParameters(nonceBrokerUrl), {
      DPoP,
    });
    expect(first.token_type).toBe('dpop');
    // The first proof had no nonce and was refused; the retry carried the broker's.
    expect(proofs).toHaveLength(2);
    expect(decodeJwt(proofs[0] as string).nonce).toBeUndefined();
    const nonce = decodeJwt(proofs[1] as string).nonce;
    expect(nonce).toEqual(expect.any(String));

    const second = await client.genericGrantRequest(config, TOKEN_EXCHANGE, await exchangeParameters(nonceBrokerUrl), {
      DPoP,
    });
    expect(second.token_type).toBe('dpop');
    expect(proofs).toHaveLength(3);
    expect(decodeJwt(proofs[2] as string).nonce).toBe(nonce);
  });
});

describe('openid-client calling an API guarded by @tessera/verify', () => {
  const API = 'https://tickets.example.com';
  const api = new Hono<{ Variables: AgentVariables }>();
  api.post(
    '/tickets/:id/comments',
    requireAgent({ issuer: brokerUrl, audience: TICKETS, actions: ['tickets:comment'] }),
    (c) => c.json({ by: c.get('agent').sub, bound: c.get('agent').cnf !== undefined }, 201),
  );

  /** openid-client's requests to the API are served by the Hono app in this process; the rest go out. */
  async function configWithApi(): Promise<client.Configuration> {
    const config = await discover(brokerUrl);
    config[client.customFetch] = (url, options) =>
      url.startsWith(API)
        ? Promise.resolve(api.request(url, options as RequestInit))
        : fetch(url, options as RequestInit);
    return config;
  }

  it('makes a DPoP-protected request with its own proof (ath, htm, htu) that the verifier accepts', async () => {
    const config = await configWithApi();
    const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
    const tokens = await client.genericGrantRequest(config, TOKEN_EXCHANGE, await exchangeParameters(brokerUrl), {
      DPoP,
    });
    const response = await client.fetchProtectedResource(
      config,
      tokens.access_token,
      new URL(`${API}/tickets/T-1234/comments?notify=false`),
      'POST',
      JSON.stringify({ text: 'summary' }),
      new Headers({ 'content-type': 'application/json' }),
      { DPoP },
    );
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ by: AGENT, bound: true });
  });

  it('is refused when it presents the bound token without its key', async () => {
    const config = await configWithApi();
    const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
    const tokens = await client.genericGrantRequest(config, TOKEN_EXCHANGE, await exchangeParameters(brokerUrl), {
      DPoP,
    });
    const refusal = await client
      .fetchProtectedResource(
        config,
        tokens.access_token,
        new URL(`${API}/tickets/T-1234/comments`),
        'POST',
        JSON.stringify({ text: 'summary' }),
      )
      .catch((error) => error);
    expect(refusal).toBeInstanceOf(client.WWWAuthenticateChallengeError);
    expect(refusal.response.status).toBe(401);
    expect(refusal.cause[0]).toMatchObject({ scheme: 'dpop', parameters: { error: 'invalid_token' } });
  });
});
