/**
 * `npm run fuzz -- --runs 100000 [--seed 42] [file ...]`: the fuzz suite (`test/fuzz/`) run long. Every
 * property runs `--runs` cases instead of its `npm test` share, from `--seed` (else a new one, which
 * fast-check prints with any failure, with the path to replay it). Files narrow the run, e.g.
 * `test/fuzz/token.test.ts`. The numbers reach the workerd test pool through vitest.config.ts (`provide`).
 * docs/testing.md says how to turn a failure into a regression test.
 */
import { spawnSync } from 'node:child_process';
import { normalize } from 'node:path';
import { parseArgs } from 'node:util';
import { fuzzPropertyFiles } from './lib/fuzz-properties';

const USAGE = 'usage: npm run fuzz -- [--runs N] [--seed S] [test/fuzz/file.test.ts ...]';

/** Exits with the usage line: a mistyped argument is the caller's, not a crash of the script. */
function usage(problem: string): never {
  console.error(`fuzz: ${problem}\n${USAGE}`);
  process.exit(2);
}

function parsedArgs() {
  try {
    return parseArgs({
      options: { runs: { type: 'string', default: '10000' }, seed: { type: 'string' } },
      allowPositionals: true,
    });
  } catch (error) {
    return usage(error instanceof Error ? error.message : String(error));
  }
}

const { values, positionals } = parsedArgs();
if (!/^[1-9][0-9]*$/.test(values.runs)) usage(`--runs ${values.runs}: a whole number of cases per property, 1 or more`);
// fast-check's seeds are 32-bit integers, negative ones included (it prints them so in a failure report).
if (values.seed !== undefined && !(/^-?[0-9]+$/.test(values.seed) && Math.abs(Number(values.seed)) < 2 ** 31))
  usage(`--seed ${values.seed}: a whole number between -2147483647 and 2147483647`);
const outside = positionals.filter((file) => !normalize(file).startsWith('test/fuzz/'));
if (outside.length > 0) usage(`${outside.join(', ')}: only files under test/fuzz/ take --runs`);

const files = positionals.length > 0 ? positionals : fuzzPropertyFiles();
const run = spawnSync('vitest', ['run', '--project', 'worker', ...files], {
  stdio: 'inherit',
  env: {
    ...process.env,
    FUZZ_RUNS: values.runs,
    ...(values.seed !== undefined && { FUZZ_SEED: values.seed }),
  },
});
if (run.error !== undefined) {
  console.error(`fuzz: could not start vitest (${run.error.message}): run this script through npm run fuzz`);
  process.exit(1);
}
process.exit(run.status ?? 1);
