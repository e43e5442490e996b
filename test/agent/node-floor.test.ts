/**
 * @tessera/agent on the oldest Node its `engines` allow, 20.19.0, the first to load an ES module with
 * `require()` (its CommonJS build requires jose, which is ESM only): the Node binary from npm
 * (`node-<platform>-<arch>`), installed under node_modules/.cache; the package's consumer
 * (`consumer/consumer.ts`) compiled as ESM and as CommonJS against the built package, and run by it against
 * the real broker.
 */
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PROJECT_ROOT } from '../../scripts/lib/local-broker';
import { DEMO_KEY_FILE } from './demo';
import { runFile as run } from './run-file';

const broker = inject('agentBrokerUrl');
const { engines } = JSON.parse(await readFile(join(PROJECT_ROOT, 'packages/agent/package.json'), 'utf8')) as {
  engines: { node: string };
};
/** `>=20.19` is 20.19.0. */
const [major, minor = '0', patch = '0'] = engines.node.replace(/^>=\s*/, '').split('.');
const NODE_VERSION = `${major}.${minor}.${patch}`;
const CACHE = join(PROJECT_ROOT, 'node_modules/.cache');
const NODE_PACKAGE = `node-${process.platform}-${process.arch}`;
const NODE_BIN = join(CACHE, `tessera-node-${NODE_VERSION}`, 'node_modules', NODE_PACKAGE, 'bin/node');
const CONSUMERS = join(CACHE, 'tessera-agent-node-floor');
/** Downloading Node and compiling on a loaded machine can take a while. */
const LONG = 180_000;

/** The Node binary of the floor version, installed once from npm (from its cache when it has it). */
async function floorNode(): Promise<void> {
  if (
    await access(NODE_BIN).then(
      () => true,
      () => false,
    )
  )
    return;
  const prefix = join(CACHE, `tessera-node-${NODE_VERSION}`);
  await mkdir(prefix, { recursive: true });
  const install = ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund'];
  await run('npm', [...install, '--prefer-offline', `${NODE_PACKAGE}@${NODE_VERSION}`], prefix);
}

beforeAll(async () => {
  await floorNode();
  await rm(CONSUMERS, { recursive: true, force: true });
}, LONG);
afterAll(() => rm(CONSUMERS, { recursive: true, force: true }));

describe(`@tessera/agent on Node ${NODE_VERSION}, the oldest its engines allow`, () => {
  it('is the version the package names', async () => {
    expect(NODE_VERSION).toMatch(/^\d+\.\d+\.\d+$/);
    expect((await run(NODE_BIN, ['--version'], PROJECT_ROOT)).trim()).toBe(`v${NODE_VERSION}`);
  });

  for (const type of ['module', 'commonjs'] as const) {
    it(
      `gets a token from the real broker as ${type === 'module' ? 'ESM' : 'CommonJS'}`,
      async () => {
        // Inside the repository, so that the consumer resolves the built workspace package and its jose.
        const folder = join(CONSUMERS, type);
        await mkdir(folder, { recursive: true });
        await writeFile(join(folder, 'package.json'), JSON.stringify({ type }));
        await writeFile(
          join(folder, 'consumer.ts'),
          await readFile(join(PROJECT_ROOT, 'test/agent/consumer/consumer.ts')),
        );
        const compilerOptions = {
          strict: true,
          target: 'ES2022',
          lib: ['ES2022'],
          types: ['node'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          outDir: 'out',
          skipLibCheck: true,
        };
        await writeFile(join(folder, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['consumer.ts'] }));
        await run(
          process.execPath,
          [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', folder],
          folder,
        );
        const printed = await run(NODE_BIN, ['out/consumer.js', broker, DEMO_KEY_FILE], folder);
        expect(JSON.parse(printed)).toEqual({ tokenType: 'DPoP', scope: 'tickets:read', refusal: 'invalid_scope' });
      },
      LONG,
    );
  }
});
