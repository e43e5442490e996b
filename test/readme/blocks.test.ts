import { describe, expect, it } from 'vitest';
import { shellBlocks } from './blocks';

const fence = '```';

describe('shellBlocks', () => {
  it('runs an unannotated shell block and shows other languages', () => {
    const blocks = shellBlocks(`# T\n\n${fence}sh\necho hi\n${fence}\n\n${fence}json\n{}\n${fence}\n`);
    expect(blocks).toEqual([{ line: 3, script: 'echo hi', outcome: { kind: 'run', expect: [] } }]);
  });

  it('reads each annotation onto the block after it', () => {
    const markdown = [
      '<!-- readme-test: skip: installing -->',
      `${fence}sh`,
      'npm ci',
      fence,
      '<!-- readme-test: background until http://localhost:8787/healthz answers -->',
      '',
      `${fence}bash`,
      'npm run dev',
      fence,
      '<!-- readme-test: expect "a \\"b\\"" "c" -->',
      `${fence}sh`,
      'echo \'a "b" c\'',
      fence,
    ].join('\n');
    expect(shellBlocks(markdown).map((block) => block.outcome)).toEqual([
      { kind: 'skip', reason: 'installing' },
      { kind: 'background', readyUrl: 'http://localhost:8787/healthz' },
      { kind: 'run', expect: ['a "b"', 'c'] },
    ]);
  });

  it.each([
    { case: 'an unknown annotation', markdown: `<!-- readme-test: maybe -->\n${fence}sh\nls\n${fence}` },
    { case: 'an annotation before prose', markdown: '<!-- readme-test: skip: x -->\ntext' },
    { case: 'an annotation at the end', markdown: '<!-- readme-test: skip: x -->\n' },
    {
      case: 'an annotation before a shown block',
      markdown: `<!-- readme-test: skip: x -->\n${fence}json\n{}\n${fence}`,
    },
    { case: 'a misspelt annotation', markdown: `<!-- readme-test skip: x -->\n${fence}sh\nls\n${fence}` },
    { case: 'a block in another shell', markdown: `${fence}console\n$ ls\n${fence}` },
    { case: 'a block with no language', markdown: `${fence}\nls\n${fence}` },
    { case: 'a block never closed', markdown: `${fence}sh\nls\n` },
  ])('refuses $case', ({ markdown }) => {
    expect(() => shellBlocks(markdown)).toThrow(/^README\.md:\d+: /);
  });
});
