/**
 * @tessera/agent's tasks against the real broker: a token per task, cached per audience and scope and
 * refreshed with a fresh attestation; DPoP by default, with the broker's nonce challenge; `task.fetch`;
 * completion and revocation killing tokens; refusals as typed errors with the broker's words.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentError, type AttestationSource, createDpopKey, selfSigned } from '@tessera/agent';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DEMO_AGENT, DEMO_KEY_FILE, demoTessera, errorOf, isActive, TICKETS } from './demo';

const broker = inject('agentBrokerUrl');
const nonceBroker = inject('agentNonceBrokerUrl');
const TASK = { description: 'Summarise ticket T-1234 and post the summary as a comment' };

/** A self-signed source that counts its attestations. */
function countingSource(): AttestationSource & { count: number } {
  const inner = selfSigned({ agent: DEMO_AGENT, key: { file: DEMO_KEY_FILE } });
  const source = {
    kind: inner.kind,
    count: 0,
    attest: (context: Parameters<AttestationSource['attest']>[0]) => {
      source.count++;
      return inner.attest(context);
    },
  };
  return source;
}

describe('task.token()', () => {
  it('gets a token for the task, naming its id', async () => {
    const task = await demoTessera(broker, { dpop: false }).task(TASK);
    const token = await task.token({ audience: TICKETS, scope: 'tickets:read tickets:comment' });
    expect(token).toMatchObject({ tokenType: 'Bearer', audience: TICKETS, scope: 'tickets:comment tickets:read' });
    expect(decodeJwt(token.accessToken)).toMatchObject({ sub: DEMO_AGENT, aud: TICKETS, task: { id: task.id } });
    expect(token.expiresAt).toBeGreaterThan(Date.now());
  });

  it('caches per audience and scope, whatever the order of the actions', async () => {
    const attestation = countingSource();
    const task = await demoTessera(broker, { attestation, dpop: false }).task(TASK);
    const [first, same] = await Promise.all([
      task.token({ audience: TICKETS, scope: 'tickets:read tickets:comment' }),
      task.token({ audience: TICKETS, scope: ['tickets:comment', 'tickets:read'] }),
    ]);
    expect(same.accessToken).toBe(first.accessToken);
    const other = await task.token({ audience: TICKETS, scope: 'tickets:read' });
    expect(other.accessToken).not.toBe(first.accessToken);
    expect(attestation.count).toBe(2);
  });

  it('refreshes a token about to expire, with a fresh attestation', async () => {
    const attestation = countingSource();
    let offset = 0;
    const tessera = demoTessera(broker, {
      attestation,
      dpop: false,
      refreshBefore: 30,
      now: () => Date.now() + offset,
    });
    const task = await tessera.task(TASK);
    const first = await task.token({ audience: TICKETS, scope: 'tickets:read', ttl: 120 });
    offset = first.expiresAt - Date.now() - 31_000;
    expect((await task.token({ audience: TICKETS, scope: 'tickets:read' })).accessToken).toBe(first.accessToken);
    offset = first.expiresAt - Date.now() - 29_000;
    const refreshed = await task.token({ audience: TICKETS, scope: 'tickets:read' });
    expect(refreshed.accessToken).not.toBe(first.accessToken);
    expect(decodeJwt(refreshed.accessToken).task).toEqual(decodeJwt(first.accessToken).task);
    expect(attestation.count).toBe(2);
  });

  it('keeps the broker refusal, its error and error_description, under a stable code', async () => {
    const task = await demoTessera(broker).task(TASK);
    const error = await errorOf(task.token({ audience: TICKETS, scope: 'tickets:delete' }));
    expect(error).toBeInstanceOf(AgentError);
    expect(error).toMatchObject({ code: 'invalid_scope', status: 400, error: 'invalid_scope' });
    expect(error.description).toEqual(expect.any(String));
    expect(String(error.message)).not.toMatch(/\n\s+at /);
  });

  it('says broker_unavailable when no broker answers', async () => {
    const task = await demoTessera('http://127.0.0.1:9', { dpop: false }).task(TASK);
    expect(await errorOf(task.token({ audience: TICKETS, scope: 'tickets:read' }))).toMatchObject({
      code: 'broker_unavailable',
    });
  });
});

describe('DPoP (RFC 9449)', () => {
  it('binds tokens to a key per task by default', async () => {
    const tessera = demoTessera(broker);
    const [one, two] = await Promise.all([tessera.task(TASK), tessera.task(TASK)]);
    const tokens = await Promise.all(
      [one, two].map((task) => task.token({ audience: TICKETS, scope: 'tickets:read' })),
    );
    expect(tokens.map((token) => token.tokenType)).toEqual(['DPoP', 'DPoP']);
    const [jktOne, jktTwo] = tokens.map((token) => (decodeJwt(token.accessToken).cnf as { jkt: string }).jkt);
    expect(jktOne).toEqual(expect.any(String));
    expect(jktOne).not.toBe(jktTwo);
  });

  it('shares one key across tasks per process', async () => {
    const tessera = demoTessera(broker, { dpop: 'per-process' });
    const tasks = await Promise.all([tessera.task(TASK), tessera.task(TASK)]);
    const tokens = await Promise.all(tasks.map((task) => task.token({ audience: TICKETS, scope: 'tickets:read' })));
    const [jktOne, jktTwo] = tokens.map((token) => (decodeJwt(token.accessToken).cnf as { jkt: string }).jkt);
    expect(jktOne).toBe(jktTwo);
  });

  it('binds to a key the caller made with createDpopKey, whose private half cannot be exported', async () => {
    const key = await createDpopKey();
    expect(key.privateKey.extractable).toBe(false);
    const task = await demoTessera(broker, { dpop: { key } }).task(TASK);
    const token = await task.token({ audience: TICKETS, scope: 'tickets:read' });
    expect(decodeJwt(token.accessToken).cnf).toEqual({ jkt: await calculateJwkThumbprint(key.publicJwk) });
  });

  it('answers the broker nonce challenge (use_dpop_nonce) once, then uses its nonce', async () => {
    const answers: string[] = [];
    const recording: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      const body = (await response.clone().json()) as { error?: string };
      answers.push(body.error ?? String(response.status));
      return response;
    };
    const tessera = demoTessera(nonceBroker, { fetch: recording, dpop: 'per-process' });
    const task = await tessera.task(TASK);
    expect((await task.token({ audience: TICKETS, scope: 'tickets:read' })).tokenType).toBe('DPoP');
    expect(answers).toEqual(['use_dpop_nonce', '200']);
    await task.token({ audience: TICKETS, scope: 'tickets:comment' });
    expect(answers).toEqual(['use_dpop_nonce', '200', '200']);
  });
});

describe('task.fetch()', () => {
  /** An API that asks for a nonce once (RFC 9449 §9), then records what each call presented. */
  let api: { url: string; seen: { authorization: string; proof: string | undefined }[]; close(): void };
  beforeAll(async () => {
    const seen: { authorization: string; proof: string | undefined }[] = [];
    const server = createServer((request: IncomingMessage, response) => {
      const proof = request.headers.dpop as string | undefined;
      const nonce = proof === undefined ? undefined : (decodeJwt(proof).nonce as string | undefined);
      if (request.headers.authorization?.startsWith('DPoP ') && nonce !== 'api-nonce-1') {
        response.writeHead(401, {
          'www-authenticate': 'DPoP error="use_dpop_nonce", error_description="a nonce is required"',
          'dpop-nonce': 'api-nonce-1',
        });
        return response.end();
      }
      seen.push({ authorization: request.headers.authorization ?? '', proof });
      response.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    api = { url, seen, close: () => server.close() };
  });
  afterAll(() => api.close());

  it('sends a bound token with a proof of this request, answering the API nonce challenge', async () => {
    const task = await demoTessera(broker).task(TASK);
    const response = await task.fetch(`${api.url}/tickets/T-1234?expand=comments`, {
      audience: TICKETS,
      scope: 'tickets:read',
    });
    expect(response.status).toBe(200);
    const call = api.seen.at(-1);
    const token = (await task.token({ audience: TICKETS, scope: 'tickets:read' })).accessToken;
    expect(call?.authorization).toBe(`DPoP ${token}`);
    const proof = decodeJwt(call?.proof ?? '');
    expect(proof).toMatchObject({ htm: 'GET', htu: `${api.url}/tickets/T-1234`, nonce: 'api-nonce-1' });
    expect(proof.ath).toEqual(expect.any(String));
    const jwk = decodeProtectedHeader(call?.proof ?? '').jwk as JWK;
    expect(await calculateJwkThumbprint(jwk)).toBe((decodeJwt(token).cnf as { jkt: string }).jkt);
  });

  it('calls the fetch it is given on its own, as the Workers runtime requires of its fetch', async () => {
    // The Workers runtime's fetch throws when called as a method of another object; this one does the same.
    const strict = function strict(this: unknown, input: RequestInfo | URL, init?: RequestInit) {
      if (this !== undefined && this !== globalThis) throw new TypeError('Illegal invocation');
      return fetch(input, init);
    } as typeof fetch;
    const task = await demoTessera(broker, { fetch: strict }).task(TASK);
    const response = await task.fetch(`${api.url}/tickets`, { audience: TICKETS, scope: 'tickets:read' });
    expect(response.status).toBe(200);
    await task.complete();
  });

  it('sends a Bearer token without a proof when DPoP is off', async () => {
    const task = await demoTessera(broker, { dpop: false }).task(TASK);
    await task.fetch(`${api.url}/tickets`, { audience: TICKETS, scope: 'tickets:read' });
    expect(api.seen.at(-1)).toEqual({ authorization: expect.stringMatching(/^Bearer ey/), proof: undefined });
  });
});

describe('task.complete() and task.revoke()', () => {
  for (const dpop of [false, 'per-task'] as const) {
    it(`kills every token of the task (${dpop === false ? 'Bearer' : 'DPoP'})`, async () => {
      const task = await demoTessera(broker, { dpop }).task(TASK);
      const tokens = await Promise.all([
        task.token({ audience: TICKETS, scope: 'tickets:read' }),
        task.token({ audience: TICKETS, scope: 'tickets:comment' }),
      ]);
      expect(await Promise.all(tokens.map((token) => isActive(broker, token.accessToken)))).toEqual([true, true]);
      await task.complete();
      expect(await Promise.all(tokens.map((token) => isActive(broker, token.accessToken)))).toEqual([false, false]);
      expect(await errorOf(task.token({ audience: TICKETS, scope: 'tickets:read' }))).toMatchObject({
        code: 'task_completed',
      });
      await task.complete();
    });
  }

  it('completes the task when an await using block is left', async () => {
    const tessera = demoTessera(broker);
    let accessToken = '';
    {
      await using task = await tessera.task(TASK);
      accessToken = (await task.token({ audience: TICKETS, scope: 'tickets:read' })).accessToken;
      expect(await isActive(broker, accessToken)).toBe(true);
    }
    expect(await isActive(broker, accessToken)).toBe(false);
  });

  it('revokes one DPoP-bound token with a proof, and the next token() gets another', async () => {
    const task = await demoTessera(broker).task(TASK);
    const first = await task.token({ audience: TICKETS, scope: 'tickets:read' });
    await task.revoke({ audience: TICKETS, scope: 'tickets:read' });
    expect(await isActive(broker, first.accessToken)).toBe(false);
    const next = await task.token({ audience: TICKETS, scope: 'tickets:read' });
    expect(next.accessToken).not.toBe(first.accessToken);
    expect(await isActive(broker, next.accessToken)).toBe(true);
  });
});
