/**
 * A writable copy of `fixtures/clean/` (a policy folder and a wrangler.toml that pass the deploy check),
 * to break in named ways, and the deploy check run over it.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkDeploy, type DeployReport } from '../../scripts/deploy/check';
import type { DeployProblemCode } from '../../scripts/deploy/problems';
import type { SecretList } from '../../scripts/deploy/secrets';
import { utcDay } from '../../worker/core/lifecycle';

export const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLEAN = fileURLToPath(new URL('fixtures/clean', import.meta.url));

/**
 * The committed demo key's public part, a demo admin credential's and a demo API's introspection credential's
 * stored hashes, as a copied entry would hold them.
 */
export async function demoMaterial(): Promise<{
  publicJwk: string;
  credentialHash: string;
  introspectionHash: string;
}> {
  const { d: _private, ...publicJwk } = JSON.parse(
    await readFile(join(PROJECT_ROOT, 'scripts/demo/demo-agent.private.jwk.json'), 'utf8'),
  );
  const admins = await readFile(join(PROJECT_ROOT, 'policies/admins.yaml'), 'utf8');
  const credentialHash = /id: demo-admin,.*secret_sha256: ([0-9a-f]{64})/.exec(admins)?.[1];
  if (credentialHash === undefined) throw new Error('policies/admins.yaml: no demo-admin credential to copy');
  const apis = await readFile(join(PROJECT_ROOT, 'policies/apis.yaml'), 'utf8');
  const introspectionHash = /introspection_secret_sha256: ([0-9a-f]{64}), demo: true/.exec(apis)?.[1];
  if (introspectionHash === undefined) throw new Error('policies/apis.yaml: no demo API credential to copy');
  return { publicJwk: JSON.stringify(publicJwk), credentialHash, introspectionHash };
}

export class Fixture {
  secrets: SecretList = { status: 'listed', names: ['APPROVAL_WEBHOOK_SECRET'] };
  bundlePath: string | undefined;

  private constructor(readonly dir: string) {}

  static async create(): Promise<Fixture> {
    const dir = await mkdtemp(join(tmpdir(), 'tessera-deploy-check-'));
    await cp(CLEAN, dir, { recursive: true });
    // Every agent's next review a quarter from now, from the clock: a fixed date would pass one day.
    const agents = join(dir, 'policies/agents.yaml');
    const reviewBy = utcDay(Date.now() + 90 * 86_400_000);
    await writeFile(
      agents,
      (await readFile(agents, 'utf8')).replace(/^( {4}owner: .*)$/gm, `$1\n    review_by: ${reviewBy}`),
    );
    return new Fixture(dir);
  }

  path(file: string): string {
    return join(this.dir, file);
  }

  async read(file: string): Promise<string> {
    return readFile(this.path(file), 'utf8');
  }

  /** Replaces `from` with `to` in `file`; throws if `from` is not there, so a breakage never silently misses. */
  async replace(file: string, from: string | RegExp, to: string): Promise<void> {
    const text = await this.read(file);
    const changed = text.replace(from, to);
    if (changed === text) throw new Error(`${file}: ${String(from)} not found`);
    await writeFile(this.path(file), changed);
  }

  async append(file: string, text: string): Promise<void> {
    await writeFile(this.path(file), `${await this.read(file)}${text}`);
  }

  /** The 1-based line of the first line of `file` that contains `text`. */
  async lineOf(file: string, text: string): Promise<number> {
    const index = (await this.read(file)).split('\n').findIndex((line) => line.includes(text));
    if (index < 0) throw new Error(`${file}: no line with ${text}`);
    return index + 1;
  }

  check(): Promise<DeployReport> {
    return checkDeploy({
      policyDir: this.path('policies'),
      wranglerConfig: this.path('wrangler.toml'),
      demoDir: join(PROJECT_ROOT, 'scripts/demo'),
      ...(this.bundlePath !== undefined && { bundlePath: this.bundlePath }),
      secrets: async () => this.secrets,
    });
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** The distinct codes of a report, sorted. */
export function codes(report: DeployReport): DeployProblemCode[] {
  return [...new Set(report.problems.map((problem) => problem.code))].sort();
}
