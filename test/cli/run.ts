/**
 * Running the CLI in tests: in-process through `runCli` with an {@link Io} of our own (fast: the many usage
 * cases), or as a child process, `tsx scripts/cli.ts …` on this Node, the way a user runs it.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { expect } from 'vitest';
import { runCli } from '../../scripts/cli/program';
import { freePort, PROJECT_ROOT } from '../../scripts/lib/local-broker';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** The whole environment the CLI sees (nothing of the test process's own `TESSERA_*`). */
  env?: Record<string, string>;
  /** Standard input. */
  stdin?: string;
  /** In-process only: a terminal that answers the confirmation question with this. */
  answer?: string;
}

export const KEY_FILE = join(PROJECT_ROOT, 'scripts/demo/demo-agent.private.jwk.json');

/** `token` as the demo agent, with its key, for `audience` and `scope`, the task described as `task`. */
export const demoAgentToken = (audience: string, scope: string, task: string): string[] => [
  'token',
  '--agent',
  'demo-agent',
  '--key',
  KEY_FILE,
  '--audience',
  audience,
  '--scope',
  scope,
  '--task',
  task,
];

const credentials = JSON.parse(readFileSync(join(PROJECT_ROOT, 'scripts/demo/admin-credentials.json'), 'utf8')) as {
  admin: string;
  approver: string;
  auditor: string;
};

const introspection = JSON.parse(
  readFileSync(join(PROJECT_ROOT, 'scripts/demo/introspection-credentials.json'), 'utf8'),
) as Record<string, string>;

/** The demo tickets API's audience, whose committed introspection credential {@link agentEnvFor} carries. */
export const TICKETS = 'https://tickets.example.com';

/**
 * The environment of an agent, or of its API, against `url`: no admin credential; the demo introspection
 * credential of the API `audience` (the tickets API by default), which `tokens check` presents.
 */
export function agentEnvFor(url: string, audience = TICKETS): Record<string, string> {
  const credential = introspection[audience];
  if (credential === undefined) throw new Error(`no demo introspection credential for ${audience}`);
  return { TESSERA_URL: url, TESSERA_INTROSPECTION_CREDENTIAL: credential };
}

/** The environment of an admin on call with the demo credential of `role`, against `url`. */
export function adminEnv(url: string, role: 'admin' | 'approver' | 'auditor' = 'admin'): Record<string, string> {
  return { TESSERA_URL: url, TESSERA_ADMIN_TOKEN: credentials[role] };
}

/** Runs the CLI in this process. */
export async function cli(argv: readonly string[], options: RunOptions = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    out: (text) => {
      stdout += text;
    },
    err: (text) => {
      stderr += text;
    },
    env: options.env ?? {},
    interactive: options.answer !== undefined,
    ask: async (question) => {
      stderr += question;
      return options.answer ?? '';
    },
    readStdin: async () => options.stdin ?? '',
  });
  return { code, stdout, stderr };
}

const TSX_CLI = join(dirname(createRequire(import.meta.url).resolve('tsx/package.json')), 'dist/cli.mjs');

/** Runs `tsx scripts/cli.ts …` as a child process on this Node, with only `env` (and PATH) from outside. */
export function spawnCli(argv: readonly string[], options: Omit<RunOptions, 'answer'> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSX_CLI, 'scripts/cli.ts', ...argv], {
      cwd: PROJECT_ROOT,
      env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(options.stdin ?? '');
  });
}

/** What a user mistake must never print: a stack, a raw exception name, node's own parse error. */
export function expectNoStack(run: Run): void {
  const output = run.stdout + run.stderr;
  expect(output).not.toMatch(/^\s+at /m);
  expect(output).not.toMatch(/TypeError|SyntaxError|ERR_PARSE_ARGS|ReferenceError/);
}

/** A failure: its exit code, the message on standard error, and no stack. */
export function expectFailure(run: Run, code: 1 | 2, message: RegExp): void {
  expectNoStack(run);
  expect(run.code, run.stderr).toBe(code);
  expect(run.stderr).toMatch(message);
}

/** A loopback URL where nothing listens. */
export async function deadUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

/**
 * Polls `probe` until it gives a value, for at most `timeoutMs`: audit records reach D1 a short time after
 * the decision, so what reads them (the audit log, revoking by jti, pending approvals) may need a moment.
 */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The claims of a JWT, unverified (the broker's tests verify; these only need the jti). */
export function claims(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
}
