/**
 * `npm run policy:build` compiles `policies/` into `worker/policy/bundle.generated.json`.
 * `npm run policy:check` also runs the policy tests in `policies/tests/`.
 * `--deploy` refuses demo agents and credentials. Exits non-zero on any problem, listing every one with
 * its file and line.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { compilePolicies } from './policy/compile';
import { formatProblem, PolicyError } from './policy/source';
import { runPolicyTests } from './policy/tests';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    dir: { type: 'string', default: 'policies' },
    out: { type: 'string', default: 'worker/policy/bundle.generated.json' },
    deploy: { type: 'boolean', default: false },
  },
});
const command = positionals[0] ?? 'build';
if (command !== 'build' && command !== 'check') {
  console.error('usage: policy [build|check] [--dir policies] [--out file] [--deploy]');
  process.exit(2);
}

try {
  const bundle = await compilePolicies(values.dir, { forDeploy: values.deploy });
  await mkdir(dirname(values.out), { recursive: true });
  await writeFile(values.out, `${JSON.stringify(bundle, null, 2)}\n`);
  const grants = Object.keys(bundle.cedar.policies).length;
  console.log(
    `policy ${bundle.version}: ${Object.keys(bundle.agents).length} agents, ${Object.keys(bundle.issuers).length} issuers, ${Object.keys(bundle.apis).length} APIs, ${grants} Cedar policies -> ${values.out}`,
  );
  if (command === 'check') {
    const { outcomes, problems } = await runPolicyTests(join(values.dir, 'tests'), bundle);
    for (const problem of problems) console.error(`policy error: ${formatProblem(problem)}`);
    const failed = outcomes.filter((outcome) => outcome.failure !== undefined);
    for (const outcome of failed)
      console.error(`FAIL ${outcome.file}:${outcome.line}: ${outcome.name}: ${outcome.failure?.message}`);
    console.log(`policy tests: ${outcomes.length - failed.length} passed, ${failed.length} failed`);
    if (outcomes.length === 0 && problems.length === 0) {
      console.error('no policy tests found in policies/tests/');
      process.exit(1);
    }
    if (failed.length > 0 || problems.length > 0) process.exit(1);
  }
} catch (error) {
  if (!(error instanceof PolicyError)) throw error;
  for (const problem of error.problems) console.error(`policy error: ${formatProblem(problem)}`);
  console.error(`${error.problems.length} policy ${error.problems.length === 1 ? 'error' : 'errors'}`);
  process.exit(1);
}
