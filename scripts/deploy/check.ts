/**
 * `npm run deploy:check`: every reason a deploy of this repository would be unsafe or broken, found in one
 * run, each with its file, line and fix. Errors stop `npm run deploy`; warnings are shown and let it go on.
 */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { PolicyBundle } from '../../worker/policy/bundle';
import { compilePolicyFolder, type PolicySources } from '../policy/compile';
import { checkBundle } from './check-bundle';
import { checkPolicySources } from './check-policy';
import { checkWranglerConfig } from './check-wrangler';
import { readDemoSecrets } from './demo';
import { type DeployProblem, error, warning } from './problems';
import type { SecretList } from './secrets';
import { readWranglerConfig } from './wrangler-config';

export interface DeployCheckInput {
  policyDir: string;
  wranglerConfig: string;
  /** Where the demo's keys and credentials are committed (`scripts/demo/`). */
  demoDir: string;
  /** The generated bundle a bare `wrangler deploy` would pack; left out when the caller rebuilds it. */
  bundlePath?: string;
  /** Lists the deployed Worker's secrets (`wrangler secret list`). */
  secrets: () => Promise<SecretList>;
  /** Epoch ms the agents' `review_by` and `expires` dates are checked against; now when left out. */
  now?: number;
}

export interface DeployReport {
  problems: DeployProblem[];
  /** The bundle that passed, for `--build` to write; absent when any error was found. */
  bundle?: PolicyBundle;
}

const SECRET_FIX = 'openssl rand -base64 32 | npx wrangler secret put APPROVAL_WEBHOOK_SECRET';

/** A configured webhook signs with `APPROVAL_WEBHOOK_SECRET`; without it no approver is ever told. */
async function checkSecrets(sources: PolicySources, list: () => Promise<SecretList>): Promise<DeployProblem[]> {
  const settings = sources.settings;
  if (settings?.data.approvals.webhook === undefined) return [];
  const where = { file: settings.path, line: settings.lineOf(['approvals', 'webhook']) };
  const secrets = await list();
  if (secrets.status === 'listed' && secrets.names.includes('APPROVAL_WEBHOOK_SECRET')) return [];
  if (secrets.status === 'unavailable') {
    return [
      warning(
        'secrets-unchecked',
        where,
        `could not check that APPROVAL_WEBHOOK_SECRET is set (wrangler: ${secrets.reason})`,
        'log in (`npx wrangler login`, or set CLOUDFLARE_API_TOKEN) and run again, or check with `npx wrangler secret list`',
      ),
    ];
  }
  const why = secrets.status === 'no-worker' ? 'the Worker does not exist yet, so it has no secrets' : 'it is not set';
  return [
    error(
      'missing-secret',
      where,
      `approvals.webhook needs the APPROVAL_WEBHOOK_SECRET secret, and ${why}: no approver would be notified`,
      `${SECRET_FIX}${secrets.status === 'no-worker' ? ' (this creates the Worker)' : ''}`,
    ),
  ];
}

/** Whether the bundle on disk, which a bare `wrangler deploy` packs, is the build of `policies/` as it is now. */
async function checkGeneratedBundle(bundlePath: string, built: PolicyBundle): Promise<DeployProblem[]> {
  const file = relative(process.cwd(), bundlePath);
  let onDisk: PolicyBundle | undefined;
  try {
    onDisk = PolicyBundle.parse(JSON.parse(await readFile(bundlePath, 'utf8')));
  } catch {
    onDisk = undefined;
  }
  if (onDisk !== undefined && onDisk.version === built.version) return [];
  const demo = [
    ...Object.values(onDisk?.agents ?? {}).filter((agent) => agent.demo),
    ...Object.values(onDisk?.admins.credentials ?? {}).filter((credential) => credential.demo),
  ].map((entry) => entry.id);
  const holds =
    onDisk === undefined ? 'is missing or unreadable' : `is policy ${onDisk.version}, not the build of policies/`;
  return [
    warning(
      'bundle-stale',
      { file, line: 1 },
      `${file} ${holds}${demo.length > 0 ? `, and holds the demo entries ${demo.join(', ')}` : ''}`,
      '`npm run deploy` rebuilds it before deploying; never run a bare `wrangler deploy`',
    ),
  ];
}

/** Runs every deploy check; never stops at the first problem. */
export async function checkDeploy(input: DeployCheckInput): Promise<DeployReport> {
  const problems: DeployProblem[] = [];

  const wrangler = await readWranglerConfig(input.wranglerConfig);
  if ('error' in wrangler) {
    const { path, line, message } = wrangler.error;
    problems.push(
      error('wrangler-config-invalid', { file: path, line }, message, 'correct the TOML; its other checks did not run'),
    );
  } else {
    problems.push(...checkWranglerConfig(wrangler.config));
  }

  const compiled = await compilePolicyFolder(input.policyDir, { forDeploy: true });
  problems.push(
    ...compiled.problems.map((problem) =>
      error(problem.code, problem, problem.message, problem.fix ?? 'correct the value (`npm run policy:check`)'),
    ),
  );
  const { problems: sourceProblems, demoUse } = await checkPolicySources(
    compiled.sources,
    await readDemoSecrets(input.demoDir),
    input.now ?? Date.now(),
  );
  problems.push(...sourceProblems);
  if (compiled.bundle !== undefined) {
    problems.push(...(await checkBundle(input.policyDir, compiled.bundle, compiled.sources, demoUse)));
  } else {
    problems.push(
      warning(
        'checks-skipped',
        { file: relative(process.cwd(), input.policyDir), line: 1 },
        'the policy does not compile, so admins, approvers, grants and policy tests were not checked',
        'fix the policy errors above and run again',
      ),
    );
  }
  problems.push(...(await checkSecrets(compiled.sources, input.secrets)));

  const passed = problems.some((problem) => problem.severity === 'error') ? undefined : compiled.bundle;
  if (input.bundlePath !== undefined && compiled.bundle !== undefined) {
    problems.push(...(await checkGeneratedBundle(input.bundlePath, compiled.bundle)));
  }
  return { problems, ...(passed !== undefined && { bundle: passed }) };
}
