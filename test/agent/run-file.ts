/** Running a program from an agent test, outside the npm script that runs the tests. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/**
 * Runs `file` in `cwd` without the `npm_*` variables of an npm script around the test; resolves its stdout,
 * or rejects with its output (tsc and attw say what is wrong on stdout).
 */
export async function runFile(file: string, args: string[], cwd: string): Promise<string> {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.toLowerCase().startsWith('npm_')) delete env[name];
  try {
    return (await promisify(execFile)(file, args, { cwd, env, maxBuffer: 1 << 24 })).stdout;
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`${file} ${args.join(' ')} failed:\n${stdout}${stderr}`, { cause: error });
  }
}
