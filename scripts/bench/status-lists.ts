/**
 * The status lists' figures for `npm run bench` (issue: revocation that reaches offline verifiers):
 *
 * - what the `status` claim costs a token: the claims built and the token signed with the worker's own
 *   functions (`worker/core/access-token.ts`), with and without the claim, in alternating batches so that
 *   other load falls on both alike; the index itself comes from memory (a block of 1,024 per isolate,
 *   reserved in the background), a few integer operations this does not time;
 * - `GET /status/<list>` served from the colo's cache: autocannon on a broker that issued one token;
 * - the size of a list of 300,000 live tokens with 1 % revoked, and of a whole generation (2^20), with the
 *   broker's codec.
 */

import { request } from 'node:http';
import autocannon from 'autocannon';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { type AccessTokenInput, accessTokenClaims, signAccessToken } from '../../worker/core/access-token';
import {
  encodeStatusList,
  LIST_CAPACITY,
  STATUS,
  STATUS_LIST_TYP,
  statusListTokenClaims,
  TESSERA_STATUS_BITS,
} from '../../worker/core/status-list';

export interface ClaimCost {
  /**
   * CPU per token, claims built and signed, in ms: without the claim (the median batch), and with it (that
   * plus the median difference of each batch with the claim and the batch without it beside it: neighbours
   * share what the machine was doing, so the difference holds when the machine's speed does not).
   */
  withoutMs: number;
  withMs: number;
  tokens: number;
}

export interface ListSize {
  entries: number;
  revoked: number;
  /** The list's ZLIB bytes, the `lst` text (base64url), and the signed list token. */
  zlibBytes: number;
  lstChars: number;
  tokenChars: number;
}

export interface ListServing {
  listsPerSecond: number;
  p99: number;
  requests: number;
  non2xx: number;
  /** Bytes of one answer, gzipped as a client that accepts gzip gets it, and plain. */
  gzipBytes: number;
  plainBytes: number;
}

export interface StatusListFigures {
  claim: ClaimCost;
  sizes: ListSize[];
  serving: ListServing;
}

const BATCH = 200;
const BATCHES = 40;

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** CPU per token for the claims and the signature, with and without the status claim, batches alternating. */
export async function claimCost(): Promise<ClaimCost> {
  const { privateKey } = await generateKeyPair('ES256');
  const key = { kid: 'bench', key: privateKey } as Parameters<typeof signAccessToken>[1];
  const base: AccessTokenInput = {
    issuer: 'https://tessera.example.com',
    agent: { id: 'bench-agent', owner: 'owner@example.com' },
    audience: 'https://tickets.example.com',
    actions: ['tickets:read', 'tickets:comment'],
    task: { id: crypto.randomUUID(), hash: 'x'.repeat(43) },
    policyVersion: '0123456789abcdef',
    ttl: 300,
    jti: '',
    now: new Date(),
  };
  const without: number[] = [];
  const differences: number[] = [];
  let idx = 0;
  const batch = async (status: boolean) => {
    const start = cpuMs();
    for (let i = 0; i < BATCH; i++) {
      const input = { ...base, jti: crypto.randomUUID(), now: new Date() };
      if (status) input.status = { idx: idx++, uri: 'https://tessera.example.com/status/sl-7-0' };
      await signAccessToken(accessTokenClaims(input), key);
    }
    return cpuMs() - start;
  };
  await batch(true);
  await batch(false);
  for (let n = 0; n < BATCHES; n++) {
    // ABBA: each kind runs first as often as second.
    const order = n % 2 === 0 ? [false, true] : [true, false];
    const pair = { with: 0, without: 0 };
    for (const status of order) pair[status ? 'with' : 'without'] = (await batch(status)) / BATCH;
    without.push(pair.without);
    differences.push(pair.with - pair.without);
  }
  const withoutMs = median(without);
  return { withoutMs, withMs: withoutMs + median(differences), tokens: BATCH * BATCHES };
}

/** The size of a list of `entries` with `revoked` of them INVALID at random places, as the broker serves it. */
export async function listSize(entries: number, revoked: number): Promise<ListSize> {
  const statuses = new Uint8Array(entries);
  let marked = 0;
  while (marked < revoked) {
    const at = Math.floor(Math.random() * entries);
    if (statuses[at] === STATUS.VALID) {
      statuses[at] = STATUS.INVALID;
      marked++;
    }
  }
  const list = await encodeStatusList(statuses, TESSERA_STATUS_BITS);
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const kid = (await exportJWK(publicKey)).x ?? 'bench';
  const iat = Math.floor(Date.now() / 1000);
  const claims = statusListTokenClaims({
    sub: 'https://tessera.example.com/status/sl-7-0',
    iat,
    exp: iat + 120,
    ttl: 60,
    list,
  });
  const token = await new SignJWT({ ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: STATUS_LIST_TYP, kid })
    .sign(privateKey);
  return {
    entries,
    revoked,
    zlibBytes: Buffer.from(list.lst, 'base64url').length,
    lstChars: list.lst.length,
    tokenChars: token.length,
  };
}

/** The two sizes the docs quote: 300,000 live tokens at 1 % revoked, and a whole generation at 1 %. */
export function listSizes(): Promise<ListSize[]> {
  return Promise.all([listSize(300_000, 3_000), listSize(LIST_CAPACITY, Math.round(LIST_CAPACITY / 100))]);
}

/** `GET listUrl` under load for `seconds` with `connections`: the colo's cache answers all but the first. */
export async function servedFromCache(listUrl: string, seconds: number, connections: number): Promise<ListServing> {
  // node:http decodes nothing: the bytes as they came over the wire.
  const sizeOf = (headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      request(listUrl, { headers }, (response) => {
        let bytes = 0;
        response.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
        });
        response.on('end', () =>
          response.statusCode === 200
            ? resolve(bytes)
            : reject(new Error(`${listUrl} answered ${response.statusCode}`)),
        );
      })
        .on('error', reject)
        .end();
    });
  const [gzipBytes, plainBytes] = [await sizeOf({ 'accept-encoding': 'gzip' }), await sizeOf({})];
  const result = await autocannon({
    url: listUrl,
    connections,
    duration: seconds,
    headers: { 'accept-encoding': 'gzip' },
  });
  return {
    listsPerSecond: result.requests.average,
    p99: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
    gzipBytes,
    plainBytes,
  };
}
