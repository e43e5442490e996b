import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-plugin';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        // The worker's own tests, inside workerd with the real local D1 and Durable Objects.
        plugins: [
          cloudflareTest(async () => ({
            wrangler: { configPath: './wrangler.toml' },
            miniflare: {
              bindings: {
                TEST_MIGRATIONS: await readD1Migrations('./migrations'),
                // Signs approval notifications in tests; a deployment sets it with `wrangler secret put`.
                APPROVAL_WEBHOOK_SECRET: 'test-webhook-secret',
                // Short enough that an engage (which waits out the lease) does not slow the suite; long
                // enough that requests use a held lease and the agent's object answers well within it.
                KILL_SWITCH_LEASE_MS: '2000',
                // Records reach D1 within a few ms when a test drains the chains.
                AUDIT_WRITE_WINDOW_MS: '5',
              },
            },
          })),
        ],
        test: {
          name: 'worker',
          include: ['test/**/*.test.ts'],
          exclude: ['test/interop/**', 'test/node/**', 'test/cli/**', 'test/browser/**'],
          setupFiles: ['./test/setup.ts'],
          // A kill switch change waits out the lease (2 s here): a test that flips it twice needs room.
          testTimeout: 15_000,
        },
      },
      {
        // The Node scripts (policy compiler, deploy check) on fixture folders; workerd cannot read files.
        test: {
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          environment: 'node',
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
    ],
  },
});
