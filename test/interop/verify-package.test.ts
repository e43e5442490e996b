/**
 * @tessera/verify as its users get it: the workspace package `npm pack`ed (the dist/ that `npm run build`
 * wrote), installed from the tarball into a fresh project with hono (its optional peer) and @types/node,
 * type-checked by `tsc --strict` under NodeNext and Bundler resolution, and run as ESM and as CommonJS
 * (through `require`) against the real broker: a token from `/token`, verified offline and by introspection,
 * through `requireAgent` and through `mcpResource`. publint and attw check the same tarball.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PROJECT_ROOT } from '../../scripts/lib/local-broker';
import { shiftClock } from '../clock/offset';
import { exchangeParameters, TICKETS, TOKEN_EXCHANGE } from './agent';

const brokerUrl = inject('brokerUrl');
/**
 * Node's flags for a consumer: its clock as far ahead as the broker's (`npm run test:next-year`), so the
 * tokens it verifies are not from its future.
 */
const clockOffsetMs = inject('clockOffsetMs');
const CONSUMER_CLOCK =
  clockOffsetMs === 0
    ? []
    : ['--import', `data:text/javascript,(${encodeURIComponent(shiftClock.toString())})(${clockOffsetMs})`];

const PACKAGE_DIR = join(PROJECT_ROOT, 'packages/verify');
const CONSUMER_SOURCE = join(PROJECT_ROOT, 'test/interop/verify-consumer/consumer.ts');
/** The demo tickets API's committed introspection credential, which the consumer introspects with. */
const TICKETS_INTROSPECTION =
  (
    JSON.parse(await readFile(join(PROJECT_ROOT, 'scripts/demo/introspection-credentials.json'), 'utf8')) as Record<
      string,
      string
    >
  )[TICKETS] ?? '';
const require = createRequire(import.meta.url);
const TSC = require.resolve('typescript/bin/tsc');
/** Compiling and running under a loaded machine can take a while. */
const SLOW = 120_000;

/** The environment of child processes, without the `npm_*` variables of an npm script that runs this test. */
const childEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));

async function exec(file: string, args: string[], cwd: string): Promise<string> {
  const { stdout } = await promisify(execFile)(file, args, { cwd, env: childEnv, maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

const node = (args: string[], cwd: string) => exec(process.execPath, args, cwd);

const tsc = (project: string, cwd: string) => node([TSC, '-p', project], cwd);

async function installed(name: string): Promise<{ version: string; bin?: Record<string, string> }> {
  return JSON.parse(await readFile(join(PROJECT_ROOT, 'node_modules', name, 'package.json'), 'utf8'));
}

/** The script of a command that a package of this repository installs. */
async function bin(name: string, command: string): Promise<string> {
  const script = (await installed(name)).bin?.[command];
  if (script === undefined) throw new Error(`${name} has no ${command} command`);
  return join(PROJECT_ROOT, 'node_modules', name, script);
}

/** Fails early, and says why, when dist/ is missing or older than the sources it is built from. */
async function assertBuilt(): Promise<void> {
  const built = await stat(join(PACKAGE_DIR, 'dist/esm/index.js')).catch(() => undefined);
  const sources = await readdir(join(PACKAGE_DIR, 'src'));
  const newest = Math.max(
    ...(await Promise.all(sources.map(async (file) => (await stat(join(PACKAGE_DIR, 'src', file))).mtimeMs))),
  );
  if (built === undefined || built.mtimeMs < newest) {
    throw new Error('packages/verify/dist is missing or older than src/: run `npm run build` first');
  }
}

/** What every consumer build shares: strict, and a Node project's globals (no DOM). */
const STRICT = { strict: true, target: 'ES2022', lib: ['ES2022'], types: ['node'], noEmitOnError: true };

/** A subproject of the consumer: its module format, the consumer's source, and tsconfig files. */
async function subproject(dir: string, type: 'module' | 'commonjs', configs: Record<string, object>): Promise<void> {
  await mkdir(dir);
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type }));
  await copyFile(CONSUMER_SOURCE, join(dir, 'consumer.ts'));
  for (const [file, compilerOptions] of Object.entries(configs)) {
    await writeFile(join(dir, file), JSON.stringify({ compilerOptions, files: ['consumer.ts'] }));
  }
}

/** A fresh token of the demo agent for the tickets API, from the real broker's `/token`. */
async function freshToken(): Promise<string> {
  const response = await fetch(`${brokerUrl}/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, ...(await exchangeParameters(brokerUrl)) }),
  });
  const body = (await response.json()) as { access_token?: string };
  expect(response.status, JSON.stringify(body)).toBe(200);
  return body.access_token as string;
}

/** Runs a compiled consumer on a fresh token, and checks it verified it, refused it elsewhere, and let it through. */
async function expectConsumerVerifies(compiled: string, cwd: string): Promise<void> {
  const token = await freshToken();
  const claims = decodeJwt(token) as { owner: string; task: { id: string } };
  const output = JSON.parse(
    await node([...CONSUMER_CLOCK, compiled, brokerUrl, TICKETS, TICKETS_INTROSPECTION, token], cwd),
  );
  expect(output).toEqual({
    claims: { sub: 'demo-agent', owner: claims.owner, task: claims.task.id },
    otherAudience: 'wrong_audience',
    route: { status: 201, body: { by: 'demo-agent', task: claims.task.id } },
    routeWithoutToken: 401,
    mcp: { comment: true, close: 403 },
  });
}

describe('@tessera/verify, packed and installed from its tarball', () => {
  let root: string;
  let tarball: string;
  let packed: string[];
  let project: string;

  beforeAll(async () => {
    await assertBuilt();
    root = await mkdtemp(join(tmpdir(), 'tessera-verify-package-'));
    // --ignore-scripts: pack the dist/ that is there. Building again here would rewrite it under the tests
    // that import it at the same time.
    const [pack] = JSON.parse(
      await exec('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', root], PACKAGE_DIR),
    ) as { filename: string; files: { path: string }[] }[];
    if (pack === undefined) throw new Error('npm pack made no tarball');
    tarball = join(root, pack.filename);
    packed = pack.files.map((file) => file.path);

    project = join(root, 'project');
    await mkdir(project);
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'verify-consumer', private: true }));
    const peers = [
      `hono@${(await installed('hono')).version}`,
      `@types/node@${(await installed('@types/node')).version}`,
    ];
    // From npm's cache when it has them (CI's `npm ci` just filled it), else from the registry.
    await exec(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball, ...peers],
      project,
    );
    // NodeNext with skipLibCheck, as the project that found the raw .ts types had it; Bundler without it, so
    // that the package's declarations (and hono's, as they reach a user) are checked too. Checking every
    // library's declarations costs about three times as long, so it is done once.
    const nodeNext = {
      ...STRICT,
      skipLibCheck: true,
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      outDir: 'dist',
    };
    const bundler = { ...STRICT, skipLibCheck: false, module: 'ESNext', moduleResolution: 'Bundler', noEmit: true };
    await subproject(join(project, 'esm'), 'module', { 'tsconfig.json': nodeNext, 'tsconfig.bundler.json': bundler });
    await subproject(join(project, 'cjs'), 'commonjs', { 'tsconfig.json': nodeNext });
  }, SLOW);

  afterAll(async () => {
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it('ships the built modules and their declarations, and brings in jose alone', async () => {
    expect(packed.filter((path) => !/^dist\/(esm|cjs)\/[a-z-]+\.(js|d\.ts)$/.test(path)).sort()).toEqual([
      'README.md',
      'dist/cjs/package.json',
      'package.json',
    ]);
    for (const format of ['esm', 'cjs']) {
      for (const entry of ['index', 'hono', 'mcp']) {
        expect(packed).toEqual(expect.arrayContaining([`dist/${format}/${entry}.js`, `dist/${format}/${entry}.d.ts`]));
      }
    }
    const manifest = JSON.parse(await readFile(join(project, 'node_modules/@tessera/verify/package.json'), 'utf8'));
    expect(Object.keys(manifest.dependencies)).toEqual(['jose']);
    expect(manifest.peerDependenciesMeta).toEqual({ hono: { optional: true } });
    const modules = (await readdir(join(project, 'node_modules'))).filter((name) => !name.startsWith('.'));
    // hono and @types/node (with its undici-types) are this project's own choices; nothing else came in.
    expect(modules.sort()).toEqual(['@tessera', '@types', 'hono', 'jose', 'undici-types']);
  });

  it(
    'type-checks with tsc --strict under Bundler resolution, the declarations of every library included',
    async () => {
      await tsc('tsconfig.bundler.json', join(project, 'esm'));
    },
    SLOW,
  );

  it(
    'compiles with tsc --strict under NodeNext, and as ESM verifies a token of the real broker',
    async () => {
      const dir = join(project, 'esm');
      await tsc('tsconfig.json', dir);
      expect(await readFile(join(dir, 'dist/consumer.js'), 'utf8')).toContain("from '@tessera/verify'");
      await expectConsumerVerifies('dist/consumer.js', dir);
    },
    SLOW,
  );

  it(
    'compiles with tsc --strict under NodeNext, and as CommonJS (require) verifies a token of the real broker',
    async () => {
      const dir = join(project, 'cjs');
      await tsc('tsconfig.json', dir);
      const compiled = await readFile(join(dir, 'dist/consumer.js'), 'utf8');
      expect(compiled).toContain('require("@tessera/verify")');
      expect(compiled).toContain('require("@tessera/verify/hono")');
      expect(compiled).toContain('require("@tessera/verify/mcp")');
      await expectConsumerVerifies('dist/consumer.js', dir);
    },
    SLOW,
  );

  it(
    'passes publint, warnings included',
    async () => {
      await node([await bin('publint', 'publint'), 'run', tarball, '--strict'], root);
    },
    SLOW,
  );

  it(
    'passes attw: every entry point resolves to types and code under node10, node16 (CJS and ESM) and bundler',
    async () => {
      await node([await bin('@arethetypeswrong/cli', 'attw'), tarball, '--no-color', '--no-emoji'], root);
    },
    SLOW,
  );
});
