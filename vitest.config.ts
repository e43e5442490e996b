import { availableParallelism } from 'node:os';
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-plugin';
import { defineConfig } from 'vitest/config';

/** `npm run test:next-year` sets this to 365: the whole suite then runs a year ahead of today. */
const clockOffsetDays = Number(process.env.TEST_CLOCK_OFFSET_DAYS ?? 0);
if (!Number.isInteger(clockOffsetDays)) throw new Error('TEST_CLOCK_OFFSET_DAYS must be a whole number of days');
/**
 * `npm run fuzz -- --runs N [--seed S]` sets these: every fuzz property (`test/fuzz/`) then runs N cases, from
 * seed S (else a new seed each run, which fast-check prints with any failure). Unset, each property runs its
 * own small number of cases from one fixed seed: the same cases on every `npm test`.
 */
const fuzzRuns = process.env.FUZZ_RUNS === undefined ? null : Number(process.env.FUZZ_RUNS);
const fuzzSeed = process.env.FUZZ_SEED === undefined ? null : Number(process.env.FUZZ_SEED);
if (fuzzRuns !== null && !(Number.isInteger(fuzzRuns) && fuzzRuns > 0))
  throw new Error('FUZZ_RUNS must be a whole number');
if (fuzzSeed !== null && !Number.isInteger(fuzzSeed)) throw new Error('FUZZ_SEED must be a whole number');
/**
 * workerd's own report of every exception a handler throws (`uncaught exception; ...`), printed in verbose mode,
 * the plugin's default. The tests that make a store, a shard or a client fail on purpose cause such reports,
 * and each such exception also reaches its caller, where the test asserts on it; `TEST_WORKERD_VERBOSE=1`
 * shows them again, when a Durable Object misbehaves.
 */
const workerdVerbose = process.env.TEST_WORKERD_VERBOSE === '1';
const provide = {
  clockOffsetMs: clockOffsetDays * 86_400_000,
  fuzz: { runs: fuzzRuns, seed: fuzzSeed },
};

/** The worker as wrangler.toml configures it, in workerd, with the bindings the tests add (one per project). */
const workerd = (bindings: Record<string, string> = {}) =>
  cloudflareTest(async () => ({
    wrangler: { configPath: './wrangler.toml' },
    verbose: workerdVerbose,
    miniflare: {
      bindings: {
        TEST_MIGRATIONS: await readD1Migrations('./migrations'),
        // Signs approval notifications in tests; a deployment sets it with `wrangler secret put`.
        APPROVAL_WEBHOOK_SECRET: 'test-webhook-secret',
        // Short enough that a kill switch change (which waits out the lease) does not slow the suite; long
        // enough that requests use a held lease and the agent's object answers well within it.
        KILL_SWITCH_LEASE_MS: '2000',
        // Each object sends its own records, 50 ms after their commit, as drainAudit also has them sent: the
        // order records reach D1 in is the order they were decided. test/audit/forwarding.test.ts turns the
        // Worker's batch of /token records on for its own test of it.
        AUDIT_HAND_OFF: 'off',
        ...bindings,
      },
      // Records reach D1 within a few ms when a test drains the chains, and a message D1 keeps refusing reaches
      // the dead letters after a few attempts, not a hundred.
      queueConsumers: {
        'tessera-audit': {
          maxBatchSize: 100,
          maxBatchTimeout: 0,
          maxRetries: 2,
          deadLetterQueue: 'tessera-audit-dead',
        },
        'tessera-audit-dead': { maxBatchSize: 100, maxBatchTimeout: 0, maxRetries: 100 },
      },
    },
  }));

export default defineConfig({
  test: {
    // Files run side by side, each in its own workerd or process as before: most of a file's time is spent
    // waiting (a kill switch lease, an approval's poll interval, workerd starting), not computing. Vitest's
    // default, a file per core but one, runs one file at a time on 2 cores; at least 3 took the `worker`
    // project from 236 s to 140 s there.
    maxWorkers: Math.max(3, availableParallelism() - 1),
    projects: [
      {
        // The worker's own tests, inside workerd with the real local D1 and Durable Objects. Each file gets a
        // workerd of its own (isolate: true), so storage, Durable Objects and module state start empty.
        plugins: [workerd()],
        test: {
          name: 'worker',
          include: ['test/**/*.test.ts'],
          exclude: [
            'test/interop/**',
            'test/core/**',
            'test/node/**',
            'test/cli/**',
            'test/agent/**',
            'test/browser/**',
            'test/meter/**',
            'test/readme/**',
          ],
          setupFiles: ['./test/clock/setup.ts', './test/setup.ts'],
          provide,
          // On a loaded machine, engaging the kill switch (a fan-out to 128 Durable Objects, then the lease)
          // takes seconds; the timeout only catches hangs (speed is shown by npm run bench, never by a timed test).
          testTimeout: 30_000,
        },
      },
      {
        // The billing meter on (`BILLING_METER`, which no deployment sets): the worker's tests with real
        // Durable Objects and a real local D1, counting what they bill.
        plugins: [workerd({ BILLING_METER: 'on' })],
        test: {
          name: 'meter',
          include: ['test/meter/**/*.test.ts'],
          setupFiles: ['./test/clock/setup.ts', './test/setup.ts'],
          provide,
          testTimeout: 30_000,
        },
      },
      {
        // The pure core (worker/core, the /token pipeline on fake stores, the key schedule, the policy engine):
        // no storage, so its files share one workerd and evaluate the worker's modules (Cedar's WebAssembly
        // above all) once.
        plugins: [workerd()],
        test: {
          name: 'core',
          include: ['test/core/**/*.test.ts'],
          isolate: false,
          setupFiles: ['./test/clock/setup.ts'],
          provide,
        },
      },
      {
        // The Node scripts (policy compiler, deploy check) on fixture folders; workerd cannot read files.
        test: {
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          environment: 'node',
          setupFiles: ['./test/clock/setup.ts'],
          provide,
          // Each test compiles a policy folder with the Cedar WebAssembly build: seconds on a loaded machine.
          testTimeout: 30_000,
        },
      },
      {
        // Clients nobody here wrote, in Node, against the real worker bundle served over HTTP by workerd.
        test: {
          name: 'interop',
          include: ['test/interop/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['./test/interop/global-setup.ts'],
          setupFiles: ['./test/clock/setup.ts'],
          provide,
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
      {
        // @tessera/agent, the agent's client, in Node against real brokers served like the interop ones, with
        // stand-ins for the trusted workload-identity issuers.
        test: {
          name: 'agent',
          include: ['test/agent/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['./test/agent/global-setup.ts'],
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
      {
        // The CLI, in-process and as a child process, against real brokers served like the interop ones.
        test: {
          name: 'cli',
          include: ['test/cli/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['./test/cli/global-setup.ts'],
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
      {
        // The on-call console in headless Chromium (playwright-core), against the real worker bundle over HTTP.
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['./test/browser/global-setup.ts'],
          // One broker, one kill switch: a scenario must not engage it under another's feet.
          fileParallelism: false,
          // After the other projects, not beside them: Chromium and a second workerd would slow their timed tests.
          sequence: { groupOrder: 1 },
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        // The README's shell blocks, in order, in one bash session against the `npm run dev` its quick start
        // starts (test/readme/blocks.ts says how each block is run).
        test: {
          name: 'readme',
          include: ['test/readme/**/*.test.ts'],
          environment: 'node',
          // Last, alone: `npm run dev` rebuilds the package other projects import, and its workerd would slow
          // their timed tests.
          sequence: { groupOrder: 2 },
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
