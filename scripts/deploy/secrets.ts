/**
 * The names of the Worker's secrets, from `wrangler secret list`: whether the secrets the policy needs are
 * set can only be asked of Cloudflare, so it needs a logged-in wrangler and the network.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify, stripVTControlCharacters } from 'node:util';
import { z } from 'zod';

export type SecretList =
  | { status: 'listed'; names: string[] }
  /** The Worker was never deployed, so it has no secrets yet. */
  | { status: 'no-worker' }
  | { status: 'unavailable'; reason: string };

const Listed = z.array(z.object({ name: z.string() }));

/** The first sentence of the first line wrangler marks as an error, without its colours. */
function wranglerError(output: string): string {
  const lines = stripVTControlCharacters(output)
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const marked = lines.find((line) => line.includes('[ERROR]'));
  const message = (marked ?? lines[0] ?? 'no output').replace(/^✘\s*\[ERROR\]\s*/, '');
  // Its first sentence says what went wrong; the rest is a tutorial.
  return message.split(/(?<=\.)\s/)[0] ?? message;
}

/**
 * Lists the secrets of the Worker `configPath` deploys, with the project's wrangler.
 *
 * @param projectRoot where `node_modules/.bin/wrangler` is.
 */
export async function listWorkerSecrets(projectRoot: string, configPath: string): Promise<SecretList> {
  const wrangler = join(projectRoot, 'node_modules', '.bin', 'wrangler');
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(wrangler, ['secret', 'list', '--format', 'json', '--config', configPath], {
      cwd: projectRoot,
      timeout: 60_000,
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
    }));
  } catch (failure) {
    const { stdout: out = '', stderr = '' } = failure as { stdout?: string; stderr?: string };
    const reason = wranglerError(`${stderr}\n${out}`);
    if (/Worker ".*" .*not found/i.test(reason)) return { status: 'no-worker' };
    return { status: 'unavailable', reason };
  }
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  const parsed = Listed.safeParse(json);
  if (!parsed.success) return { status: 'unavailable', reason: 'wrangler printed something other than a secret list' };
  return { status: 'listed', names: parsed.data.map((secret) => secret.name) };
}
