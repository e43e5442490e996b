/**
 * docs/agents.md, the guide to @tessera/agent, against the code: every TypeScript sample type-checks
 * (strict) against the built packages and the MCP SDK, each as a module of its own, with `tessera` and
 * `task` declared as the samples that use them assume; what its YAML samples show of the agents and issuers
 * of `policies/` is as `policies/` declares it.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PROJECT_ROOT } from '../../scripts/lib/local-broker';

const GUIDE = join(PROJECT_ROOT, 'docs/agents.md');

/** One fenced block of the guide: its language, the line its code starts on, and its code. */
interface Block {
  language: string;
  line: number;
  code: string;
}

function blocksOf(markdown: string): Block[] {
  const blocks: Block[] = [];
  for (const match of markdown.matchAll(/^```(\w+)\n([\s\S]*?)^```$/gm)) {
    const line = markdown.slice(0, match.index).split('\n').length + 1;
    blocks.push({ language: match[1] as string, line, code: match[2] as string });
  }
  return blocks;
}

let blocks: Block[];
let dir: string;
beforeAll(async () => {
  blocks = blocksOf(await readFile(GUIDE, 'utf8'));
  // Inside the repository, so that the samples resolve its node_modules (the built workspace packages).
  await mkdir(join(PROJECT_ROOT, 'node_modules/.cache'), { recursive: true });
  dir = await mkdtemp(join(PROJECT_ROOT, 'node_modules/.cache/agent-guide-'));
});
afterAll(() => (dir === undefined ? undefined : rm(dir, { recursive: true, force: true })));

describe('docs/agents.md', () => {
  it('has TypeScript samples that type-check against the built packages', async () => {
    const samples = blocks.filter((block) => block.language === 'ts');
    expect(samples.length).toBeGreaterThanOrEqual(12);
    await writeFile(
      join(dir, 'globals.d.ts'),
      [
        "import type { Task, Tessera } from '@tessera/agent';",
        'declare global {',
        '  const tessera: Tessera;',
        '  const task: Task;',
        '}',
      ].join('\n'),
    );
    // Each sample a module of its own (`export {}`), named for the line of the guide it starts on.
    for (const sample of samples)
      await writeFile(join(dir, `agents.md-${sample.line}.ts`), `${sample.code}export {};\n`);
    const compilerOptions = {
      strict: true,
      target: 'ES2022',
      lib: ['ES2023', 'ESNext.Disposable', 'DOM', 'DOM.Iterable'],
      module: 'ESNext',
      moduleResolution: 'Bundler',
      types: ['node'],
      noEmit: true,
      skipLibCheck: true,
    };
    await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['*.ts'] }));
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const checked = await promisify(execFile)(process.execPath, [tsc, '-p', dir]).then(
      () => '',
      (error: { stdout?: string }) => error.stdout ?? String(error),
    );
    expect(checked).toBe('');
  });

  it('shows the agents and issuers of policies/ as policies/ declares them', async () => {
    const declared = new Map<string, unknown>();
    for (const file of ['agents', 'issuers'] as const) {
      const entries = parse(await readFile(join(PROJECT_ROOT, `policies/${file}.yaml`), 'utf8'))[file] as {
        id: string;
      }[];
      for (const entry of entries) declared.set(`${file}/${entry.id}`, entry);
    }
    const shown: string[] = [];
    for (const block of blocks.filter((candidate) => candidate.language === 'yaml')) {
      const parsed = (parse(block.code) ?? {}) as Record<string, { id: string }[] | undefined>;
      for (const file of ['agents', 'issuers'] as const)
        for (const entry of parsed[file] ?? []) {
          const policy = declared.get(`${file}/${entry.id}`);
          if (policy === undefined) continue;
          shown.push(`${file}/${entry.id}`);
          expect(policy, `docs/agents.md line ${block.line}`).toMatchObject(entry);
        }
    }
    expect(shown.sort()).toEqual([
      'agents/attack-path-scanner',
      'agents/graph-indexer',
      'agents/release-bot',
      'issuers/github-actions',
      'issuers/kubernetes',
      'issuers/spire',
    ]);
  });
});
