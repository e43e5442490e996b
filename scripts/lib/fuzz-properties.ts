/** The fuzz suite's properties: every file of `test/fuzz/` but the regression examples, which have no cases to multiply. */
import { readdirSync } from 'node:fs';

export function fuzzPropertyFiles(): string[] {
  return readdirSync('test/fuzz')
    .filter((file) => file.endsWith('.test.ts') && file !== 'regressions.test.ts')
    .map((file) => `test/fuzz/${file}`);
}
