/**
 * The README's fenced blocks, read in order, each with what the README test does with it. A shell block
 * (```sh or ```bash) is run unless an HTML comment on the lines just before it says otherwise:
 *
 * - `<!-- readme-test: expect "text" ... -->`: run it; its output must contain each JSON-quoted string.
 * - `<!-- readme-test: background until URL answers -->`: a server a reader leaves running: started in the
 *   background, and ready once URL answers 200.
 * - `<!-- readme-test: skip: why -->`: not run, and reported as skipped with the reason (installing, or the
 *   command that runs this test).
 *
 * Any other block language is shown, not run, if it is one of {@link SHOWN}; anything else, an annotation
 * that is not one of these, or one that is not followed by a shell block is a mistake the test reports.
 */

/** Fence languages the README uses for what a reader reads, not runs. */
const SHOWN = new Set(['json', 'ts', 'yaml', 'cedar', 'toml', 'text']);

export type Outcome =
  | { kind: 'run'; expect: string[] }
  | { kind: 'background'; readyUrl: string }
  | { kind: 'skip'; reason: string };

export interface ShellBlock {
  /** The line of the opening fence, 1-based. */
  line: number;
  script: string;
  outcome: Outcome;
}

/** The README's shell blocks in order; throws an `Error` naming the line of anything it cannot place. */
export function shellBlocks(markdown: string): ShellBlock[] {
  const lines = markdown.split('\n');
  const blocks: ShellBlock[] = [];
  let pending: { line: number; outcome: Outcome } | null = null;
  for (let index = 0; index < lines.length; index++) {
    const text = lines[index] ?? '';
    const annotation = /^<!-- readme-test: (.*) -->$/.exec(text);
    if (annotation) {
      if (pending !== null) throw new Error(`README.md:${pending.line}: an annotation with no shell block after it`);
      pending = { line: index + 1, outcome: parseOutcome(annotation[1] ?? '', index + 1) };
      continue;
    }
    if (text.includes('readme-test')) throw new Error(`README.md:${index + 1}: not a readme-test annotation: ${text}`);
    const fence = /^\s*```(\S*)\s*$/.exec(text);
    if (fence === null) {
      if (pending !== null && text.trim() !== '') {
        throw new Error(`README.md:${pending.line}: an annotation with no shell block after it`);
      }
      continue;
    }
    const language = fence[1] ?? '';
    const close = lines.findIndex((later, at) => at > index && later.trim() === '```');
    if (close === -1) throw new Error(`README.md:${index + 1}: a block that is never closed`);
    if (language === 'sh' || language === 'bash') {
      blocks.push({
        line: index + 1,
        script: lines.slice(index + 1, close).join('\n'),
        outcome: pending?.outcome ?? { kind: 'run', expect: [] },
      });
      pending = null;
    } else if (!SHOWN.has(language)) {
      throw new Error(
        `README.md:${index + 1}: a block in "${language}": use sh or bash to run it, or one of ${[...SHOWN]}`,
      );
    } else if (pending !== null) {
      throw new Error(`README.md:${pending.line}: an annotation before a ${language} block, which is never run`);
    }
    index = close;
  }
  if (pending !== null) throw new Error(`README.md:${pending.line}: an annotation with no shell block after it`);
  return blocks;
}

function parseOutcome(text: string, line: number): Outcome {
  const skip = /^skip: (.+)$/.exec(text);
  if (skip) return { kind: 'skip', reason: skip[1] ?? '' };
  const background = /^background until (\S+) answers$/.exec(text);
  if (background) return { kind: 'background', readyUrl: background[1] ?? '' };
  const expectations = /^expect((?: "(?:[^"\\]|\\.)*")+)$/.exec(text);
  if (expectations) {
    const quoted = expectations[1]?.match(/"(?:[^"\\]|\\.)*"/g) ?? [];
    return { kind: 'run', expect: quoted.map((string) => JSON.parse(string) as string) };
  }
  throw new Error(`README.md:${line}: an annotation the README test does not know: ${text}`);
}
