/**
 * The README's shell blocks, in order, as a new user pastes them into one terminal: one bash session (so
 * variables carry over from block to block), `set -euo pipefail`, in the repository's root, against the
 * broker the quick start's `npm run dev` starts. Each block must exit 0 and print what its annotation
 * expects (test/readme/blocks.ts; docs/testing.md).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../scripts/lib/local-broker';
import { type ShellBlock, shellBlocks } from './blocks';

const blocks = shellBlocks(await readFile(join(PROJECT_ROOT, 'README.md'), 'utf8'));

/** The test's environment without the reader-facing settings a user of this machine may have exported. */
const env = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !name.startsWith('TESSERA_') && !name.startsWith('VITEST')),
);

/** How long `npm run dev` may take to answer (it builds the policy and the package, and migrates D1 first). */
const READY_MS = 150_000;

function title(block: ShellBlock): string {
  const first = block.script.split('\n')[0] ?? '';
  return `README.md:${block.line}: ${first.length > 60 ? `${first.slice(0, 60)}…` : first}`;
}

/** Resolves true once `url` answers 200, false if it does not within `ms` or `server` exits first. */
async function ready(url: string, server: ChildProcess, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && server.exitCode === null) {
    if (await answers(url)) return true;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return false;
}

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(url)).ok;
  } catch {
    return false;
  }
}

describe("README.md's shell blocks, in order", () => {
  let dir = '';
  let session: ChildProcess;
  let output = '';
  const servers: ChildProcess[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tessera-readme-'));
    session = spawn('bash', ['--noprofile', '--norc'], { cwd: PROJECT_ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    session.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    session.stdin?.write('set -euo pipefail\n');
  });

  afterAll(async () => {
    session.stdin?.end();
    for (const server of servers) {
      if (server.pid === undefined) continue;
      const exited = server.exitCode === null ? once(server, 'exit') : Promise.resolve();
      // Its own process group: npm, wrangler and the workerd it starts, which may outlive npm.
      try {
        process.kill(-server.pid, 'SIGTERM');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
      }
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs a block in the session; resolves with its output (stdout and stderr), or throws with it. */
  async function run(block: ShellBlock, n: number): Promise<string> {
    const script = join(dir, `block-${n}.sh`);
    const out = join(dir, `block-${n}.out`);
    await writeFile(script, `${block.script}\n`);
    const done = `readme-test: block ${n} done\n`;
    session.stdin?.write(`source ${script} < /dev/null > ${out} 2>&1; printf '${done}'\n`);
    while (!output.includes(done) && session.exitCode === null) {
      await Promise.race([once(session.stdout ?? session, 'data'), once(session, 'exit')]);
    }
    const text = await readFile(out, 'utf8').catch(() => '');
    if (!output.includes(done)) throw new Error(`exited with ${session.exitCode}:\n${text}`);
    return text;
  }

  /** Starts a block in the background, in its own process group, and waits until `url` answers. */
  async function start(block: ShellBlock, n: number, url: string): Promise<void> {
    if (await answers(url)) throw new Error(`${url} answers already: stop what serves it (another npm run dev?)`);
    const log = join(dir, `block-${n}.log`);
    const fd = openSync(log, 'w');
    const server = spawn('bash', ['-c', `set -euo pipefail\n${block.script}`], {
      cwd: PROJECT_ROOT,
      env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    servers.push(server);
    if (!(await ready(url, server, READY_MS))) {
      const why =
        server.exitCode === null ? `did not answer in ${READY_MS / 1000} s` : `exited with ${server.exitCode}`;
      throw new Error(`${url} ${why}:\n${await readFile(log, 'utf8')}`);
    }
  }

  blocks.forEach((block, n) => {
    const { outcome } = block;
    if (outcome.kind === 'skip') {
      it.skip(`${title(block)} (skipped: ${outcome.reason})`, () => {});
    } else if (outcome.kind === 'background') {
      it(
        `${title(block)} (in the background, until ${outcome.readyUrl} answers)`,
        async () => {
          await start(block, n, outcome.readyUrl);
        },
        READY_MS + 10_000,
      );
    } else {
      it(title(block), async () => {
        const text = await run(block, n);
        for (const expected of outcome.expect) expect(text).toContain(expected);
      });
    }
  });
});
