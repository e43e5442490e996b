/**
 * The built @tessera/agent (packages/agent/dist) in the runtimes its README names besides Node: Bun and
 * Deno (from npm, as devDependencies) run `runtimes/cli-agent.ts`, and workerd runs
 * `runtimes/worker-agent.ts` (the Worker of docs/agents.md) bundled as a deploy would bundle it. Each attests
 * as the demo agent to the broker that requires DPoP nonces, calls an API that verifies its token and proof
 * with @tessera/verify, and completes its task, after which the token is dead.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { VerifyError, verifyAgentToken } from '@tessera/verify';
import { decodeJwt } from 'jose';
import { convertV4MiniflareOptions, Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { unstable_getMiniflareWorkerOptions } from 'wrangler';
import { bundleModules, PROJECT_ROOT, wranglerBundle } from '../../scripts/lib/local-broker';
import { DEMO_AGENT, DEMO_KEY_FILE, isActive } from './demo';
import { type TaskReport, TICKETS } from './runtimes/task-flow';

const broker = inject('agentNonceBrokerUrl');
const RUNTIMES = join(PROJECT_ROOT, 'test/agent/runtimes');

/** What the API answers a call whose token and proof it verified. */
interface Caller {
  sub: string;
  task: string;
  jkt: string | undefined;
}

/**
 * An API for the tickets audience that requires a DPoP-bound token with `tickets:read` and a proof of the
 * call, answers who called, and keeps each task's token for the test to introspect.
 */
let api: { url: string; tokens: Map<string, string>; close(): void };

async function answer(request: IncomingMessage, response: ServerResponse, url: string): Promise<void> {
  const [scheme, token = ''] = (request.headers.authorization ?? '').split(' ');
  try {
    const claims = await verifyAgentToken(token, {
      issuer: broker,
      audience: TICKETS,
      actions: ['tickets:read'],
      requireDpop: true,
      dpop: scheme === 'DPoP' ? { proof: request.headers.dpop as string, method: 'GET', url } : undefined,
    });
    api.tokens.set(claims.task.id, token);
    const caller: Caller = { sub: claims.sub, task: claims.task.id, jkt: claims.cnf?.jkt };
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(caller));
  } catch (error) {
    if (!(error instanceof VerifyError)) throw error;
    response.writeHead(error.status, { 'content-type': 'application/json' }).end(JSON.stringify({ code: error.code }));
  }
}

beforeAll(async () => {
  const server = createServer((request, response) => {
    void answer(request, response, `${api.url}${request.url}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  api = { url, tokens: new Map(), close: () => server.close() };
});
afterAll(() => api.close());

/** What every runtime must have done: called the API with a bound token of its task, dead once the task completed. */
async function expectTaskDone(caller: Caller): Promise<void> {
  const token = api.tokens.get(caller.task) ?? '';
  const claims = decodeJwt(token);
  expect(claims).toMatchObject({ sub: DEMO_AGENT, aud: TICKETS, task: { id: caller.task } });
  expect(caller).toEqual({ sub: DEMO_AGENT, task: caller.task, jkt: (claims.cnf as { jkt: string }).jkt });
  expect(caller.jkt).toEqual(expect.any(String));
  expect(await isActive(broker, token)).toBe(false);
}

/** The runtime the root package.json installs from npm (its `bin`). */
function npmBinary(name: 'bun' | 'deno'): string {
  return join(PROJECT_ROOT, 'node_modules/.bin', name);
}

async function runCli(command: string, args: string[]): Promise<TaskReport> {
  const { stdout } = await promisify(execFile)(command, [...args, broker, api.url, DEMO_KEY_FILE], {
    cwd: RUNTIMES,
    env: { ...process.env, NO_COLOR: '1' },
  });
  return JSON.parse(stdout) as TaskReport;
}

describe('@tessera/agent in Bun', () => {
  it('calls an API with a DPoP-bound token of its task, and completes the task', async () => {
    const report = await runCli(npmBinary('bun'), ['run', 'cli-agent.ts']);
    expect(report).toMatchObject({ runtime: expect.stringMatching(/^Bun\//), status: 200 });
    await expectTaskDone(report.body as Caller);
  });
});

describe('@tessera/agent in Deno', () => {
  it('calls an API with a DPoP-bound token of its task, and completes the task', async () => {
    const permissions = ['--allow-net=127.0.0.1', `--allow-read=${PROJECT_ROOT}`, '--no-lock'];
    const report = await runCli(npmBinary('deno'), ['run', ...permissions, 'cli-agent.ts']);
    expect(report).toMatchObject({ runtime: expect.stringMatching(/^Deno\//), status: 200 });
    await expectTaskDone(report.body as Caller);
  });
});

describe('@tessera/agent in a Worker (workerd)', () => {
  it('calls an API with a DPoP-bound token of its task, and completes the task on leaving await using', async () => {
    const outDir = await mkdtemp(join(tmpdir(), 'tessera-agent-worker-'));
    const config = join(RUNTIMES, 'wrangler.toml');
    await wranglerBundle({ config, outDir });
    const { modulesRules: _rules, ...workerOptions } = unstable_getMiniflareWorkerOptions(config).workerOptions;
    const worker = new Miniflare(
      convertV4MiniflareOptions({
        ...workerOptions,
        modules: await bundleModules(outDir),
        modulesRoot: outDir,
        bindings: { TESSERA_BROKER: broker, TESSERA_AGENT_KEY: await readFile(DEMO_KEY_FILE, 'utf8') },
        // Offline: do not fetch the `request.cf` template from the network.
        cf: false,
      }),
    );
    try {
      const response = await worker.dispatchFetch('http://worker/', {
        method: 'POST',
        body: JSON.stringify({ api: api.url }),
      });
      expect(response.status, await response.clone().text()).toBe(200);
      await expectTaskDone((await response.json()) as Caller);
    } finally {
      await worker.dispose();
      await rm(outDir, { recursive: true, force: true });
    }
  });
});
