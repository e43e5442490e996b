/**
 * `npm run deploy:check`: lists every problem a deploy of this repository would have (demo agents and
 * credentials, ISSUER, the D1 id, missing secrets, example configuration, policy errors and tests), each
 * with its file, line and fix, and exits 1 if any is an error. `npm run deploy` runs it first.
 *
 *   --offline   do not ask Cloudflare for the Worker's secrets (reported as not checked)
 *   --build     when nothing is an error, write the checked policy bundle for `wrangler deploy`
 *   --config F  the wrangler configuration (default wrangler.toml); --dir D the policy folder (policies)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { checkDeploy } from './deploy/check';
import { formatReport } from './deploy/report';
import { listWorkerSecrets } from './deploy/secrets';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    config: { type: 'string', default: join(root, 'wrangler.toml') },
    dir: { type: 'string', default: join(root, 'policies') },
    offline: { type: 'boolean', default: false },
    build: { type: 'boolean', default: false },
  },
});
const bundlePath = join(root, 'worker/policy/bundle.generated.json');

const report = await checkDeploy({
  policyDir: values.dir,
  wranglerConfig: values.config,
  demoDir: join(root, 'scripts/demo'),
  // With --build the bundle is about to be rewritten, so what is on disk now does not matter.
  ...(!values.build && { bundlePath }),
  secrets: values.offline
    ? async () => ({ status: 'unavailable', reason: 'not asked (--offline)' })
    : () => listWorkerSecrets(root, values.config),
});
console.log(formatReport(report.problems));
if (report.bundle === undefined) process.exit(1);
if (values.build) {
  await mkdir(dirname(bundlePath), { recursive: true });
  await writeFile(bundlePath, `${JSON.stringify(report.bundle, null, 2)}\n`);
  console.log(`policy ${report.bundle.version} -> ${bundlePath}`);
}
