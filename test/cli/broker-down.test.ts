/**
 * Every command that calls the broker, when there is none, or when what answers is not a Tessera broker:
 * one line that says so and what to do, exit code 1, no stack.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProgram } from '../../scripts/cli/program';
import { adminEnv, agentEnvFor, cli, deadUrl, expectFailure, KEY_FILE, spawnCli, TICKETS } from './run';

const TOKEN = ['--agent', 'demo-agent', '--key', KEY_FILE, '--audience', 'a', '--scope', 's', '--task', 't'];

/** A valid call of every command that talks to the broker. */
const CALLS: Record<string, string[]> = {
  attest: ['attest', '--agent', 'demo-agent', '--key', KEY_FILE],
  token: ['token', ...TOKEN],
  'kill-switch status': ['kill-switch', 'status'],
  'kill-switch engage': ['kill-switch', 'engage', '--reason', 'x', '--yes'],
  'kill-switch release': ['kill-switch', 'release', '--reason', 'x'],
  'agents list': ['agents', 'list'],
  'agents show': ['agents', 'show', 'demo-agent'],
  'agents suspend': ['agents', 'suspend', 'demo-agent', '--reason', 'x'],
  'agents resume': ['agents', 'resume', 'demo-agent', '--reason', 'x'],
  'agents revoke': ['agents', 'revoke', 'demo-agent', '--reason', 'x'],
  'tokens revoke': ['tokens', 'revoke', 'some-jti', '--reason', 'x'],
  'tokens check': ['tokens', 'check', 'some-token', '--audience', TICKETS],
  'tasks complete': ['tasks', 'complete', 'T-1', '--token', 'some-token'],
  'tasks revoke': ['tasks', 'revoke', 'T-1', '--reason', 'x'],
  'approvals list': ['approvals', 'list'],
  'approvals show': ['approvals', 'show', 'a.demo-agent'],
  'approvals approve': ['approvals', 'approve', 'a.demo-agent', '--reason', 'x'],
  'approvals deny': ['approvals', 'deny', 'a.demo-agent', '--reason', 'x'],
  'audit list': ['audit', 'list'],
  'audit verify': ['audit', 'verify'],
  'audit backlog': ['audit', 'backlog'],
  'audit archive': ['audit', 'archive'],
  'audit export': ['audit', 'export', '--since', '1h', '--until', '1s'],
  health: ['health'],
  review: ['review'],
};
const NAMES = Object.keys(CALLS);

it('covers every command but the two that make keys locally', () => {
  const leaves = (command: ReturnType<typeof createProgram>, prefix: string[] = []): string[] =>
    command.commands.flatMap((sub) =>
      sub.commands.length === 0 ? [[...prefix, sub.name()].join(' ')] : leaves(sub, [...prefix, sub.name()]),
    );
  const program = createProgram({
    out: () => undefined,
    err: () => undefined,
    env: {},
    interactive: false,
    ask: async () => '',
    readStdin: async () => '',
  });
  expect(leaves(program).sort()).toEqual([...NAMES, 'keygen', 'admin-credential', 'introspection-credential'].sort());
});

describe('a broker that is down', () => {
  it.each(NAMES)('%s says nothing is listening and where', async (name) => {
    const url = await deadUrl();
    const run = await cli(CALLS[name] ?? [], { env: { ...agentEnvFor(url), ...adminEnv(url) } });
    expectFailure(
      run,
      1,
      /^error: cannot reach the broker at http:\/\/127\.0\.0\.1:\d+: nothing is listening\. Start it \(npm run dev\) or fix --url or TESSERA_URL\n$/,
    );
    expect(run.stderr).toContain(url);
  });

  it('says so from a real process too', async () => {
    const run = await spawnCli(['health'], { env: { TESSERA_URL: await deadUrl() } });
    expectFailure(run, 1, /^error: cannot reach the broker at .*: nothing is listening/);
  });
});

/** What a server that is not a Tessera broker might answer, and what the CLI must say to it. */
const IMPOSTORS = {
  html: {
    status: 200,
    type: 'text/html',
    body: '<html><body>It works!</body></html>',
    error: /is not JSON: is http:\/\/127\.0\.0\.1:\d+ a Tessera broker\? Check --url or TESSERA_URL/,
  },
  'another JSON API': {
    status: 404,
    type: 'application/json',
    body: '{"message":"Not Found"}',
    error: /HTTP 404 for .*, not in a Tessera broker's error shape: is http:\/\/127\.0\.0\.1:\d+ one\?/,
  },
  'an empty JSON object': {
    status: 200,
    type: 'application/json',
    body: '{}',
    error: /is not what a Tessera broker sends: is http:\/\/127\.0\.0\.1:\d+ one/,
  },
  'a login redirect': {
    status: 302,
    type: 'text/html',
    body: '',
    error: /answered .* with a redirect to https:\/\/login\.example\.com\/: a login page in front of it\?/,
  },
  'a Tessera broker without its stores': {
    status: 503,
    type: 'application/json',
    body: '{"error":"temporarily_unavailable","error_description":"the broker cannot reach its state; no token was issued"}',
    error: /\(503 temporarily_unavailable: the broker cannot reach its state; no token was issued\)/,
  },
} as const;

describe.each(Object.entries(IMPOSTORS))('a server that answers %s', (_name, impostor) => {
  let server: Server;
  let url: string;
  const seen: { authorization: string | undefined; url: string | undefined }[] = [];

  beforeAll(async () => {
    server = createServer((request, response) => {
      seen.push({ authorization: request.headers.authorization, url: request.url });
      response.writeHead(impostor.status, {
        'content-type': impostor.type,
        ...(impostor.status === 302 && { location: 'https://login.example.com/' }),
      });
      response.end(impostor.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it.each(NAMES)('%s says what answered and what to check', async (name) => {
    expectFailure(await cli(CALLS[name] ?? [], { env: { ...agentEnvFor(url), ...adminEnv(url) } }), 1, impostor.error);
  });

  it('never puts a credential in a URL', () => {
    const credential = adminEnv(url).TESSERA_ADMIN_TOKEN ?? '';
    const introspection = agentEnvFor(url).TESSERA_INTROSPECTION_CREDENTIAL ?? '';
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.some(({ authorization }) => authorization === `Bearer ${credential}`)).toBe(true);
    expect(seen.some(({ authorization }) => authorization?.startsWith('Basic '))).toBe(true);
    for (const request of seen) {
      expect(request.url).not.toContain(credential);
      expect(request.url).not.toContain(introspection);
    }
  });
});
