import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-plugin';
import { defineConfig } from 'vitest/config';

/** `npm run test:next-year` sets this to 365: the whole suite then runs a year ahead of today. */
const clockOffsetDays = Number(process.env.TEST_CLOCK_OFFSET_DAYS ?? 0);
if (!Number.isInteger(clockOffsetDays)) throw new Error('TEST_CLOCK_OFFSET_DAYS must be a whole number of days');
const provide = { clockOffsetMs: clockOffsetDays * 86_400_000 };

/** The worker as wrangler.toml configures it, in workerd, with the bindings the tests add (one per project). */
const workerd = () =>
  cloudflareTest(async () => ({
    wrangler: { configPath: './wrangler.toml' },
    miniflare: {
      bindings: {
        TEST_MIGRATIONS: await readD1Migrations('./migrations'),
        // Signs approval notifications in tests; a deployment sets it with `wrangler secret put`.
        APPROVAL_WEBHOOK_SECRET: 'test-webhook-secret',
      },
    },
  }));

export default defineConfig({
  test: {
    projects: [
      {
        // The worker's own tests, inside workerd with the real local D1 and Durable Objects. Each file gets a
        // workerd of its own (isolate: true), so storage, Durable Objects and module state start empty.
        plugins: [workerd()],
        test: {
          name: 'worker',
          include: ['test/**/*.test.ts'],
          exclude: ['test/interop/**', 'test/core/**'],
          setupFiles: ['./test/clock/setup.ts', './test/setup.ts'],
          provide,
          // On a loaded machine, engaging the kill switch (a fan-out to 128 Durable Objects) takes seconds;
          // the timeout only catches hangs (speed is shown by npm run bench, never by a timed test).
          testTimeout: 30_000,
        },
      },
      {
        // The pure core (worker/core, the key schedule, the policy engine): no storage and no I/O, so its
        // files share one workerd and evaluate the worker's modules (Cedar's WebAssembly above all) once.
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
    ],
  },
});
