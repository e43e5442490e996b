/**
 * A second JOSE implementation, auth0's jsonwebtoken on Node's crypto, verifies the broker's tokens against
 * the JWKS the broker publishes: what a downstream API that does not use jose would do.
 */
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { AGENT, exchangeParameters, TICKETS, TOKEN_EXCHANGE } from './agent';

const brokerUrl = inject('brokerUrl');

async function issueToken(): Promise<string> {
  const response = await fetch(`${brokerUrl}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, ...(await exchangeParameters(brokerUrl)) }),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { access_token: string }).access_token;
}

/** The published key with the token's `kid`, as a Node KeyObject. */
async function publishedKey(kid: string) {
  const jwks = (await (await fetch(`${brokerUrl}/.well-known/jwks.json`)).json()) as {
    keys: (JsonWebKey & { kid: string; alg: string; use: string })[];
  };
  const jwk = jwks.keys.find((key) => key.kid === kid);
  if (jwk === undefined) throw new Error(`no published key ${kid}`);
  expect(jwk).toMatchObject({ alg: 'ES256', use: 'sig' });
  return createPublicKey({ key: jwk, format: 'jwk' });
}

describe('jsonwebtoken verifies issued tokens against the published JWKS', () => {
  let token: string;
  let kid: string;
  beforeAll(async () => {
    token = await issueToken();
    const decoded = jwt.decode(token, { complete: true });
    if (decoded === null || decoded.header.kid === undefined) throw new Error('the token has no kid');
    kid = decoded.header.kid;
  });

  it('verifies the signature, issuer, audience and lifetime, and reads the claims', async () => {
    const verified = jwt.verify(token, await publishedKey(kid), {
      algorithms: ['ES256'],
      issuer: brokerUrl,
      audience: TICKETS,
      complete: true,
    });
    expect(verified.header).toMatchObject({ alg: 'ES256', typ: 'at+jwt', kid });
    expect(verified.payload).toMatchObject({
      sub: AGENT,
      client_id: AGENT,
      scope: 'tickets:comment',
      owner: 'alice@example.com',
      task: { id: expect.any(String), hash: expect.any(String) },
    });
  });

  it('refuses the token for another audience', async () => {
    const key = await publishedKey(kid);
    expect(() => jwt.verify(token, key, { algorithms: ['ES256'], audience: 'https://graph.example.com' })).toThrow(
      jwt.JsonWebTokenError,
    );
  });

  it('refuses the token once its payload is altered', async () => {
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const altered = Buffer.from(JSON.stringify({ ...claims, scope: 'tickets:close' })).toString('base64url');
    const key = await publishedKey(kid);
    expect(() => jwt.verify(`${header}.${altered}.${signature}`, key, { algorithms: ['ES256'] })).toThrow(
      jwt.JsonWebTokenError,
    );
  });
});
