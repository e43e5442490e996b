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
              },
            },
          })),
        ],
        test: {
          name: 'worker',
          include: ['test/**/*.test.ts'],
          exclude: ['test/interop/**', 'test/browser/**'],
          setupFiles: ['./test/setup.ts'],
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
