/**
 * The built @tessera/agent (packages/agent/dist) in the runtimes its README names besides Node: Bun and
 * Deno (from npm, as devDependencies) run `runtimes/cli-agent.ts`, and workerd runs `runtimes/worker-agent.ts`
 * bundled as a deploy would bundle it. Each attests as the demo agent to the broker that requires DPoP
 * nonces, calls an API that verifies its token and proof with @tessera/verify, and completes the task,
 * after which the token is dead.
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

/** An API for the tickets audience that verifies each call's token and DPoP proof, and answers who called. */
let api: { url: string; close(): void };

async function answer(request: IncomingMessage, response: ServerResponse, url: string): Promise<void> {
  const [scheme, token] = (request.headers.authorization ?? '').split(' ');
  try {
    const claims = await verifyAgentToken(token ?? '', {
      issuer: broker,
      audience: TICKETS,
      actions: ['tickets:read'],
      requireDpop: true,
      dpop: scheme === 'DPoP' ? { proof: request.headers.dpop as string, method: 'GET', url } : undefined,
    });
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ sub: claims.sub, task: claims.task.id, jkt: claims.cnf?.jkt }));
  } catch (error) {
    if (!(error instanceof VerifyError)) throw error;
    response.writeHead(error.status, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ code: error.code }));
  }
}

beforeAll(async () => {
  const server = createServer((request, response) => {
    void answer(request, response, `${api.url}${request.url}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  api = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
});
afterAll(() => api.close());

/** What every runtime must have done: a bound token the API accepted, for the task, dead once it completed. */
async function expectTaskDone(report: TaskReport, runtime: RegExp): Promise<void> {
  expect(report.runtime).toMatch(runtime);
  expect(report.status).toBe(200);
  const claims = decodeJwt(report.accessToken);
  expect(report.tokenType).toBe('DPoP');
  expect(claims).toMatchObject({ sub: DEMO_AGENT, aud: TICKETS, task: { id: report.taskId } });
  expect(report.body).toEqual({ sub: DEMO_AGENT, task: report.taskId, jkt: (claims.cnf as { jkt: string }).jkt });
  expect(await isActive(broker, report.accessToken)).toBe(false);
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
  it('gets a DPoP-bound token, calls an API with it and completes the task', async () => {
    await expectTaskDone(await runCli(npmBinary('bun'), ['run', 'cli-agent.ts']), /^Bun\//);
  });
});

describe('@tessera/agent in Deno', () => {
  it('gets a DPoP-bound token, calls an API with it and completes the task', async () => {
    const permissions = ['--allow-net=127.0.0.1', `--allow-read=${PROJECT_ROOT}`, '--no-lock'];
    await expectTaskDone(await runCli(npmBinary('deno'), ['run', ...permissions, 'cli-agent.ts']), /^Deno\//);
  });
});

describe('@tessera/agent in a Worker (workerd)', () => {
  it('gets a DPoP-bound token, calls an API with it and completes the task', async () => {
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
      expect(response.status).toBe(200);
      await expectTaskDone((await response.json()) as TaskReport, /^Cloudflare-Workers$/);
    } finally {
      await worker.dispose();
      await rm(outDir, { recursive: true, force: true });
    }
  });
});
