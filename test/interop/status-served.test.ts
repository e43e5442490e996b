/**
 * A list the running broker serves, read over HTTP as a verifier elsewhere would: gzipped for a client that
 * accepts it, `application/statuslist+jwt`, open to any origin, and read by a second implementation
 * (`@sd-jwt/jwt-status-list`) after its signature is checked against the broker's JWKS with jose.
 */
import { request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { getListFromStatusListJWT } from '@sd-jwt/jwt-status-list';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { describe, expect, inject, it } from 'vitest';
import { exchangeParameters, TOKEN_EXCHANGE } from './agent';

const brokerUrl = inject('brokerUrl');

async function issue(): Promise<{ token: string; idx: number; uri: string }> {
  const response = await fetch(`${brokerUrl}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, ...(await exchangeParameters(brokerUrl)) }),
  });
  expect(response.status, await response.clone().text()).toBe(200);
  const token = ((await response.json()) as { access_token: string }).access_token;
  const { status } = decodeJwt(token) as { status: { status_list: { idx: number; uri: string } } };
  return { token, ...status.status_list };
}

/** GET `url` with node:http, which decodes nothing: the bytes and headers as they came. */
function rawGet(url: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }>(
    (resolve, reject) => {
      request(url, { headers }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }),
        );
        response.on('error', reject);
      })
        .on('error', reject)
        .end();
    },
  );
}

describe('a status list the broker serves, read over HTTP', () => {
  it('comes gzipped to a client that accepts gzip, plain to one that does not, and reads the same', async () => {
    const { uri } = await issue();
    const gzipped = await rawGet(uri, { 'accept-encoding': 'gzip' });
    expect(gzipped.status).toBe(200);
    expect(gzipped.headers['content-encoding']).toBe('gzip');
    expect(gzipped.headers['content-type']).toBe('application/statuslist+jwt');
    expect(gzipped.headers['access-control-allow-origin']).toBe('*');
    const plain = await rawGet(uri, {});
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(gunzipSync(gzipped.body).toString()).toBe(plain.body.toString());
    expect(gzipped.body.length).toBeLessThan(plain.body.length);
  });

  it('is read by @sd-jwt/jwt-status-list: a revoked token INVALID, a live one VALID', async () => {
    const live = await issue();
    const revoked = await issue();
    const revoke = await fetch(`${brokerUrl}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: revoked.token }),
    });
    expect(revoke.status).toBe(200);
    // The colo keeps a copy for a second: read it after that.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    for (const { uri, idx, expected } of [
      { ...live, expected: 0 },
      { ...revoked, expected: 1 },
    ]) {
      const jwt = await (await fetch(uri)).text();
      await jwtVerify(jwt, createRemoteJWKSet(new URL(`${brokerUrl}/.well-known/jwks.json`)), {
        typ: 'statuslist+jwt',
        subject: uri,
      });
      expect(getListFromStatusListJWT(jwt).getStatus(idx)).toBe(expected);
    }
  });
});
