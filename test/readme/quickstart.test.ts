/**
 * The README's agent quick start is the file its next shell block runs: the TypeScript block under "An agent
 * with `@tessera/agent`" must be `examples/agent-quickstart/index.ts` as it is, so what a reader copies is
 * what the README's tests ran.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');

describe("the README's agent quick start", () => {
  it('shows examples/agent-quickstart/index.ts word for word', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## An agent with `@tessera/agent`'));
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(block).toBe(await readFile(join(ROOT, 'examples/agent-quickstart/index.ts'), 'utf8'));
  });
});
