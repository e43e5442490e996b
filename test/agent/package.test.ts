/**
 * @tessera/agent as its users get it: `npm pack`ed from the dist/ that `npm run build` wrote, installed from
 * the tarball into a fresh project with @types/node, type-checked by `tsc --strict` under NodeNext (as ESM and
 * as CommonJS) and Bundler resolution, run both ways against the real broker, and checked by publint and attw.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PROJECT_ROOT } from '../../scripts/lib/local-broker';
import { DEMO_KEY_FILE } from './demo';
import { runFile as run } from './run-file';

const broker = inject('agentBrokerUrl');
const AGENT_PACKAGE = join(PROJECT_ROOT, 'packages/agent');
const CONSUMER = join(PROJECT_ROOT, 'test/agent/consumer/consumer.ts');
const resolve = createRequire(import.meta.url).resolve;
/** Installing and compiling on a loaded machine can take a while. */
const LONG = 120_000;

/** A repository dependency's manifest: its version, so that the fresh project installs what npm's cache holds. */
async function manifestOf(name: string): Promise<{ version: string; bin?: Record<string, string> }> {
  return JSON.parse(await readFile(join(PROJECT_ROOT, 'node_modules', name, 'package.json'), 'utf8'));
}

/** The script of `command`, a command a repository dependency installs. */
async function binOf(name: string, command: string): Promise<string> {
  const script = (await manifestOf(name)).bin?.[command];
  if (script === undefined) throw new Error(`${name} installs no ${command}`);
  return join(PROJECT_ROOT, 'node_modules', name, script);
}

/** Packs the dist/ that is there (--ignore-scripts: no rebuild under the other test files) into `dir`. */
async function packInto(dir: string): Promise<{ tarball: string; files: string[] }> {
  const args = ['pack', '--json', '--ignore-scripts', '--pack-destination', dir];
  const packs = JSON.parse(await run('npm', args, AGENT_PACKAGE)) as { filename: string; files: { path: string }[] }[];
  const [only] = packs;
  if (packs.length !== 1 || only === undefined) throw new Error(`npm pack made ${packs.length} tarballs`);
  return { tarball: join(dir, only.filename), files: only.files.map(({ path }) => path) };
}

/** The compiler options every consumer shares: strict, Node's globals, no DOM. */
const CONSUMER_OPTIONS = { strict: true, target: 'ES2022', lib: ['ES2022'], types: ['node'], noEmitOnError: true };

describe('@tessera/agent, packed and installed from its tarball', () => {
  let workDir: string;
  let tarball: string;
  let files: string[];
  let app: string;

  /** A folder of `app` of the given module type holding the consumer and one tsconfig per entry. */
  async function consumerFolder(name: string, type: 'module' | 'commonjs', tsconfigs: Record<string, object>) {
    const folder = join(app, name);
    await mkdir(folder);
    await writeFile(join(folder, 'package.json'), JSON.stringify({ type }));
    await writeFile(join(folder, 'consumer.ts'), await readFile(CONSUMER, 'utf8'));
    for (const [file, compilerOptions] of Object.entries(tsconfigs))
      await writeFile(join(folder, file), JSON.stringify({ compilerOptions, files: ['consumer.ts'] }));
    return folder;
  }

  const tsc = (tsconfig: string, cwd: string) =>
    run(process.execPath, [resolve('typescript/bin/tsc'), '-p', tsconfig], cwd);

  beforeAll(async () => {
    const built = await stat(join(AGENT_PACKAGE, 'dist/esm/index.js')).catch(() => undefined);
    const sources = await Promise.all(
      (await readdir(join(AGENT_PACKAGE, 'src'))).map((file) => stat(join(AGENT_PACKAGE, 'src', file))),
    );
    if (built === undefined || sources.some((source) => source.mtimeMs > built.mtimeMs))
      throw new Error('packages/agent/dist is missing or older than src/: run `npm run build` first');
    workDir = await mkdtemp(join(tmpdir(), 'tessera-agent-package-'));
    ({ tarball, files } = await packInto(workDir));
    app = join(workDir, 'app');
    await mkdir(app);
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'agent-consumer', private: true }));
    const install = ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball];
    await run('npm', [...install, `@types/node@${(await manifestOf('@types/node')).version}`], app);
  }, LONG);

  afterAll(() => (workDir === undefined ? undefined : rm(workDir, { recursive: true, force: true })));

  it('ships the README, the manifest and built modules with declarations, and depends on jose alone', async () => {
    const other = files.filter((path) => !/^dist\/(esm|cjs)\/[a-z-]+\.(js|d\.ts)$/.test(path));
    expect(other.sort()).toEqual(['README.md', 'dist/cjs/package.json', 'package.json']);
    expect(files).toEqual(expect.arrayContaining(['dist/esm/index.d.ts', 'dist/cjs/index.js']));
    const manifest = JSON.parse(await readFile(join(app, 'node_modules/@tessera/agent/package.json'), 'utf8'));
    expect(manifest.dependencies).toEqual({ jose: expect.any(String) });
    const installed = (await readdir(join(app, 'node_modules'))).filter((name) => !name.startsWith('.')).sort();
    expect(installed).toEqual(['@tessera', '@types', 'jose', 'undici-types']);
  });

  it(
    'type-checks under Bundler resolution, its declarations included (no skipLibCheck)',
    async () => {
      const bundler = { ...CONSUMER_OPTIONS, module: 'ESNext', moduleResolution: 'Bundler', noEmit: true };
      await tsc('tsconfig.json', await consumerFolder('bundler', 'module', { 'tsconfig.json': bundler }));
    },
    LONG,
  );

  for (const type of ['module', 'commonjs'] as const) {
    it(
      `compiles under NodeNext as ${type === 'module' ? 'ESM' : 'CommonJS'} and gets a token from the real broker`,
      async () => {
        const nodeNext = { ...CONSUMER_OPTIONS, module: 'NodeNext', moduleResolution: 'NodeNext', outDir: 'out' };
        const folder = await consumerFolder(type, type, { 'tsconfig.json': nodeNext });
        await tsc('tsconfig.json', folder);
        const compiled = await readFile(join(folder, 'out/consumer.js'), 'utf8');
        expect(compiled).toContain(type === 'module' ? "from '@tessera/agent'" : 'require("@tessera/agent")');
        const printed = await run(process.execPath, ['out/consumer.js', broker, DEMO_KEY_FILE], folder);
        expect(JSON.parse(printed)).toEqual({ tokenType: 'DPoP', scope: 'tickets:read', refusal: 'invalid_scope' });
      },
      LONG,
    );
  }

  it(
    'passes publint (strict) and attw under node10, node16 (CJS and ESM) and bundler',
    async () => {
      await run(process.execPath, [await binOf('publint', 'publint'), 'run', tarball, '--strict'], workDir);
      await run(process.execPath, [await binOf('@arethetypeswrong/cli', 'attw'), tarball, '--no-color'], workDir);
    },
    LONG,
  );
});
