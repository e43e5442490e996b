/**
 * The same flow from Python (`examples/python-agent/`): Authlib's OAuth 2.0 client sends the RFC 8693
 * exchange with a self-signed attestation that joserfc signs, as Bearer and DPoP-bound (against the broker
 * that requires DPoP nonces), keeps a refusal's OAuth error, and completes the task, which kills the token.
 * The libraries are installed into a virtual environment under node_modules/.cache from
 * `examples/python-agent/requirements.txt`; without python3 the tests are skipped, and say why.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { PROJECT_ROOT } from '../../scripts/lib/local-broker';
import { DEMO_AGENT, DEMO_KEY_FILE, isActive, TICKETS } from './demo';

const run = promisify(execFile);
const EXAMPLE = join(PROJECT_ROOT, 'examples/python-agent');
const VENV = join(PROJECT_ROOT, 'node_modules/.cache/tessera-python-agent');
const PYTHON = join(VENV, 'bin/python');
/** Installing the libraries into a new environment takes a while on a loaded machine. */
const INSTALL_TIMEOUT = 300_000;

const python3 = await run('python3', ['--version']).then(
  () => true,
  () => false,
);
if (!python3) console.warn('test/agent/python.test.ts: skipped, python3 is not on PATH');

/** What `agent.py` prints. */
interface PythonReport {
  token_type: string;
  scope: string;
  task_id: string;
  task: string;
  access_token: string;
  refused: string | null;
  completed: boolean;
}

/**
 * The environment, made once and remade when requirements.txt changes: the copy of it written there once pip
 * succeeded is what was installed.
 */
async function virtualEnvironment(): Promise<void> {
  const requirements = await readFile(join(EXAMPLE, 'requirements.txt'), 'utf8');
  const installed = await readFile(join(VENV, 'requirements.txt'), 'utf8').catch(() => undefined);
  if (installed === requirements) return;
  await run('python3', ['-m', 'venv', '--clear', VENV]);
  // --retries 0: where pip is set up with a package index it can reach beside one it cannot, it passes over
  // the unreachable one at once instead of retrying it for over a minute.
  const pip = ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--retries', '0'];
  await run(PYTHON, [...pip, '-r', join(EXAMPLE, 'requirements.txt')]);
  await writeFile(join(VENV, 'requirements.txt'), requirements);
}

async function runAgent(broker: string, dpop: boolean): Promise<PythonReport> {
  const args = ['agent.py', broker, DEMO_KEY_FILE, ...(dpop ? ['--dpop'] : [])];
  const { stdout } = await run(PYTHON, args, { cwd: EXAMPLE, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
  return JSON.parse(stdout) as PythonReport;
}

describe.skipIf(!python3)('a Python agent with Authlib and joserfc (examples/python-agent)', () => {
  beforeAll(virtualEnvironment, INSTALL_TIMEOUT);

  const cases = [
    { name: 'a Bearer token', broker: inject('agentBrokerUrl'), dpop: false, tokenType: 'Bearer' },
    {
      name: 'a DPoP-bound token, answering the nonce challenge',
      broker: inject('agentNonceBrokerUrl'),
      dpop: true,
      tokenType: 'DPoP',
    },
  ] as const;
  for (const { name, broker, dpop, tokenType } of cases) {
    it(`exchanges a self-signed attestation for ${name}, and completes the task`, async () => {
      const report = await runAgent(broker, dpop);
      expect(report).toMatchObject({
        token_type: tokenType,
        scope: 'tickets:read',
        task_id: report.task,
        completed: true,
      });
      const jwks = createRemoteJWKSet(new URL(`${broker}/.well-known/jwks.json`));
      const { payload } = await jwtVerify(report.access_token, jwks, { issuer: broker, audience: TICKETS });
      expect(payload).toMatchObject({ sub: DEMO_AGENT, client_id: DEMO_AGENT, task: { id: report.task } });
      expect(payload.cnf !== undefined).toBe(dpop);
      // The broker's refusal of an action not granted, with its OAuth error.
      expect(report.refused).toBe('invalid_scope');
      // Completing the task killed the token.
      expect(await isActive(broker, report.access_token)).toBe(false);
    });
  }
});
