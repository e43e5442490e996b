/**
 * `task.mcpFetch` against the real broker and a stand-in MCP server on loopback whose answer each test
 * chooses: the token it carries, when it steps up on `403 insufficient_scope` (MCP authorization, "Scope
 * Challenge Handling"; RFC 6750 §3.1), and when it leaves the answer to the transport.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { demoTessera, TICKETS } from './demo';

const broker = inject('agentBrokerUrl');
const TASK = { description: 'Summarise ticket T-1234 and post the summary as a comment' };
const BODY = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'comment' } });

/** What the stand-in server saw of one request: the scope of its token, its scheme and its body. */
interface Seen {
  scheme: string;
  scope: string;
  body: string;
}

/** How the stand-in answers the nth request (from 0), given the scope of its token. */
type Answer = (scope: string, n: number) => { status: number; challenge?: string };

let url: string;
let close: () => Promise<void>;
let seen: Seen[];
let answer: Answer;

async function bodyOf(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

beforeAll(async () => {
  const server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    const [scheme = '', token = ''] = (request.headers.authorization ?? '').split(' ');
    const scope = String(decodeJwt(token).scope);
    seen.push({ scheme, scope, body: await bodyOf(request) });
    const { status, challenge } = answer(scope, seen.length - 1);
    response.writeHead(status, challenge === undefined ? {} : { 'www-authenticate': challenge }).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  close = () => new Promise((resolve) => server.close(() => resolve()));
});

afterAll(() => close());

beforeEach(() => {
  seen = [];
});

/** A 200 for a token whose scope has `needed`, else a 403 insufficient_scope challenge naming it. */
const needs =
  (needed: string, scheme = 'Bearer'): Answer =>
  (scope) =>
    scope.split(' ').includes(needed)
      ? { status: 200 }
      : { status: 403, challenge: `${scheme} error="insufficient_scope", scope="${needed}", resource_metadata="x"` };

async function mcpFetch(options: { dpop?: false } = {}) {
  const task = await demoTessera(broker, options).task(TASK);
  return task.mcpFetch({ audience: TICKETS, scope: 'tickets:read' });
}

function post(fetch: Awaited<ReturnType<typeof mcpFetch>>) {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY });
}

describe('task.mcpFetch', () => {
  it('carries the task token for the audience, DPoP-bound by default', async () => {
    answer = () => ({ status: 200 });
    expect((await post(await mcpFetch())).status).toBe(200);
    expect(seen).toEqual([{ scheme: 'DPoP', scope: 'tickets:read', body: BODY }]);
  });

  it('on 403 insufficient_scope asks for the held plus the named scope and sends the request again', async () => {
    answer = needs('tickets:comment');
    const fetch = await mcpFetch({ dpop: false });
    expect((await post(fetch)).status).toBe(200);
    expect(seen).toEqual([
      { scheme: 'Bearer', scope: 'tickets:read', body: BODY },
      { scheme: 'Bearer', scope: 'tickets:comment tickets:read', body: BODY },
    ]);
    // The wider scope is kept for the next requests.
    expect((await post(fetch)).status).toBe(200);
    expect(seen[2]?.scope).toBe('tickets:comment tickets:read');
  });

  it('reads a DPoP challenge, and parameters as tokens as well as quoted strings', async () => {
    answer = (scope) =>
      scope.includes('tickets:comment')
        ? { status: 200 }
        : { status: 403, challenge: 'DPoP algs="ES256", error=insufficient_scope, scope=tickets:comment' };
    expect((await post(await mcpFetch())).status).toBe(200);
    expect(seen.map((request) => request.scope)).toEqual(['tickets:read', 'tickets:comment tickets:read']);
  });

  it('retries once only: a second 403 reaches the transport, whatever it names', async () => {
    const named = ['tickets:comment', 'tickets:close'];
    answer = (_, n) => ({ status: 403, challenge: `Bearer error="insufficient_scope", scope="${named[n]}"` });
    expect((await post(await mcpFetch({ dpop: false }))).status).toBe(403);
    expect(seen.map((request) => request.scope)).toEqual(['tickets:read', 'tickets:comment tickets:read']);
  });

  it.each([
    { case: 'a scope it already holds', challenge: 'Bearer error="insufficient_scope", scope="tickets:read"' },
    { case: 'no scope', challenge: 'Bearer error="insufficient_scope"' },
    { case: 'another error', challenge: 'Bearer error="invalid_token", scope="tickets:comment"' },
    { case: 'another scheme', challenge: 'Basic realm="x", error="insufficient_scope", scope="tickets:comment"' },
  ])('does not step up on a 403 naming $case', async ({ challenge }) => {
    answer = () => ({ status: 403, challenge });
    expect((await post(await mcpFetch({ dpop: false }))).status).toBe(403);
    expect(seen).toHaveLength(1);
  });

  it('refuses an audience that is not a URL and a scope with no action', async () => {
    const task = await demoTessera(broker).task(TASK);
    expect(() => task.mcpFetch({ audience: 'tickets', scope: 'tickets:read' })).toThrow(TypeError);
    expect(() => task.mcpFetch({ audience: TICKETS, scope: ' ' })).toThrow(TypeError);
  });
});
