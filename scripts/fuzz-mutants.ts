/**
 * `npm run fuzz:mutants [-- name ...]`: the fuzz suite's mutation check. Each mutant breaks one input check of
 * the worker on purpose (one exact edit of its source); the fuzz properties (`test/fuzz/`, without the
 * regression examples, at `npm test`'s runs and seed) then run against it, and must fail. The source is
 * restored after each mutant, however the run ends, and the script refuses to start on a file with
 * uncommitted changes, so that what it restores is what git has.
 *
 * Prints, per mutant, the properties that caught it and how long each ran until it failed; exits non-zero
 * when the unmutated suite fails or a mutant survives. docs/testing.md records the last results.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fuzzPropertyFiles } from './lib/fuzz-properties';

interface Mutant {
  name: string;
  /** What the broken check lets through. */
  breaks: string;
  file: string;
  /** Text that occurs exactly once in `file`, and what it becomes. */
  find: string;
  replace: string;
}

const MUTANTS: readonly Mutant[] = [
  {
    name: 'surrogates',
    breaks: 'a lone surrogate in a body (the body reader skips its well-formed check)',
    file: 'worker/http/read-body.ts',
    find: 'if (!isWellFormedDeep(fields)) {',
    replace: 'if (false) {',
  },
  {
    name: 'repeated-form',
    breaks: 'a form parameter sent twice (the last one wins)',
    file: 'worker/http/read-body.ts',
    find: 'if (Object.hasOwn(fields, name)) {',
    replace: 'if (false) {',
  },
  {
    name: 'repeated-json',
    breaks: 'a JSON member sent twice (JSON.parse keeps the last)',
    file: 'worker/http/read-body.ts',
    find: 'if (repeated !== undefined) {',
    replace: 'if (false) {',
  },
  {
    name: 'content-type',
    breaks: 'a body under any other content type, read as JSON',
    file: 'worker/http/read-body.ts',
    find: "else throw refuse('unsupported_media_type', { contentType: type });",
    replace: 'else fields = jsonFields(await bodyText(request));',
  },
  {
    name: 'json-array',
    breaks: 'a JSON body that is an array, not an object',
    file: 'worker/http/read-body.ts',
    find: "if (typeof body !== 'object' || body === null || Array.isArray(body)) {",
    replace: "if (typeof body !== 'object' || body === null) {",
  },
  {
    name: 'canonical-token',
    breaks: "a copy of one of the broker's tokens in another spelling (padding, spaces, other signature bits)",
    file: 'worker/http/bearer.ts',
    find: "if (!isCanonicalJwt(token)) return { valid: false, reason: 'not_canonical' };",
    replace: '',
  },
  {
    name: 'canonical-attestation',
    breaks: 'an attestation in another spelling than its canonical compact form',
    file: 'worker/core/attestation.ts',
    find: "if (!isCanonicalJwt(token)) throw refuse('malformed_attestation', { check: 'not_canonical' });",
    replace: '',
  },
  {
    name: 'description-echo',
    breaks: "an error_description echoing the caller's input as sent, outside RFC 6749 §5.2's characters",
    file: 'worker/core/errors.ts',
    find: "const safe = input.replace(/[^\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]/g, '?');",
    replace: 'const safe = input;',
  },
];

interface VitestReport {
  testResults: {
    name: string;
    assertionResults: { title: string; status: string; duration?: number; failureMessages: string[] }[];
  }[];
}

interface Outcome {
  passed: boolean;
  /** Failing properties; none when the suite failed otherwise (a mutant that does not build). */
  failed: { file: string; seconds: number; message: string }[];
  seconds: number;
}

const outputDir = mkdtempSync(join(tmpdir(), 'fuzz-mutants-'));
/** npm test's runs and seed, whatever this shell has set for npm run fuzz. */
const { FUZZ_RUNS: _runs, FUZZ_SEED: _seed, ...suiteEnv } = process.env;

/** Runs the fuzz properties as npm test runs them, and reads vitest's JSON report. */
function runSuite(label: string): Outcome {
  const report = join(outputDir, `${label}.json`);
  const started = performance.now();
  const run = spawnSync(
    'vitest',
    ['run', '--project', 'worker', ...fuzzPropertyFiles(), '--reporter=json', `--outputFile=${report}`],
    { stdio: 'ignore', env: suiteEnv },
  );
  const seconds = (performance.now() - started) / 1000;
  if (run.error !== undefined)
    throw new Error(`could not start vitest (${run.error.message}): run npm run fuzz:mutants`);
  const { testResults } = JSON.parse(readFileSync(report, 'utf8')) as VitestReport;
  const failed = testResults.flatMap((file) =>
    file.assertionResults
      .filter((test) => test.status === 'failed')
      .map((test) => ({
        file: file.name.replace(`${process.cwd()}/`, ''),
        seconds: (test.duration ?? 0) / 1000,
        // fast-check's report opens with the run that failed and its seed and path; a timeout with itself.
        message: (test.failureMessages[0] ?? '').split('\n').slice(0, 2).join(' '),
      })),
  );
  return { passed: run.status === 0, failed, seconds };
}

function gitDirty(file: string): boolean {
  return spawnSync('git', ['diff', '--quiet', 'HEAD', '--', file]).status !== 0;
}

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !MUTANTS.some((mutant) => mutant.name === name));
if (unknown.length > 0) {
  console.error(`fuzz:mutants: no mutant ${unknown.join(', ')}; the mutants: ${MUTANTS.map((m) => m.name).join(', ')}`);
  process.exit(2);
}
const chosen = wanted.length === 0 ? MUTANTS : MUTANTS.filter((mutant) => wanted.includes(mutant.name));
for (const mutant of chosen) {
  if (gitDirty(mutant.file)) {
    console.error(`fuzz:mutants: ${mutant.file} has uncommitted changes: commit or stash them first`);
    process.exit(2);
  }
  const occurrences = readFileSync(mutant.file, 'utf8').split(mutant.find).length - 1;
  if (occurrences !== 1) {
    console.error(`fuzz:mutants: ${mutant.name}: its text occurs ${occurrences} times in ${mutant.file}, not once`);
    process.exit(2);
  }
}

const baseline = runSuite('baseline');
console.info(`unmutated: ${baseline.passed ? 'passes' : 'FAILS'} (${baseline.seconds.toFixed(0)} s)`);
if (!baseline.passed) process.exit(1);

/** The source a mutant replaced, while it is in place: put back on any exit. */
let restore: (() => void) | undefined;
process.on('exit', () => restore?.());
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

let survivors = 0;
for (const mutant of chosen) {
  const original = readFileSync(mutant.file, 'utf8');
  restore = () => writeFileSync(mutant.file, original);
  writeFileSync(mutant.file, original.replace(mutant.find, mutant.replace));
  let outcome: Outcome;
  try {
    outcome = runSuite(mutant.name);
  } finally {
    restore();
    restore = undefined;
  }
  if (outcome.passed) survivors += 1;
  if (!outcome.passed && outcome.failed.length === 0) {
    console.error(`fuzz:mutants: ${mutant.name}: the suite failed without a failing property: does the mutant build?`);
    process.exit(1);
  }
  const caught = outcome.failed.map((test) => `${test.file} (${test.seconds.toFixed(1)} s)`).join(', ');
  console.info(`${mutant.name}: ${outcome.passed ? 'SURVIVED' : `caught by ${caught}`}; lets through ${mutant.breaks}`);
  for (const test of outcome.failed) console.info(`  ${test.file}: ${test.message.slice(0, 400)}`);
}
rmSync(outputDir, { recursive: true });
process.exit(survivors === 0 ? 0 : 1);
