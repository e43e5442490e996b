/**
 * The command line itself, in-process: help for every command, "did you mean" for a mistyped command or
 * flag, and one clear line with exit code 2 for each mistake a user makes before anything reaches a broker.
 */
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import { describe, expect, it } from 'vitest';
import { createProgram } from '../../scripts/cli/program';
import { secretHash } from '../../worker/core/credential-secret';
import { adminEnv, cli, deadUrl, expectFailure, expectNoStack, KEY_FILE, spawnCli } from './run';

/** Every command of the tree, by its path of names: groups and the commands that act. */
function commandPaths(
  command: CommandUnknownOpts,
  prefix: string[] = [],
): { path: string[]; command: CommandUnknownOpts }[] {
  return command.commands.flatMap((sub) => {
    const path = [...prefix, sub.name()];
    return [{ path, command: sub }, ...commandPaths(sub, path)];
  });
}

const program = createProgram({
  out: () => undefined,
  err: () => undefined,
  env: {},
  interactive: false,
  ask: async () => '',
  readStdin: async () => '',
});
const all = commandPaths(program);
const leaves = all.filter(({ command }) => command.commands.length === 0);

/** A one-letter slip: two different neighbouring letters swapped (not the first), or a short word's last doubled. */
function slip(word: string): string {
  const at = [...word].findIndex((letter, i) => i >= 2 && i + 1 < word.length && letter !== word[i + 1]);
  if (word.length < 4 || at < 0) return word + word.at(-1);
  return word.slice(0, at) + word[at + 1] + word[at] + word.slice(at + 2);
}

/** A token request with every required flag. */
const TOKEN = ['token', '--agent', 'demo-agent', '--key', KEY_FILE, '--audience', 'a', '--scope', 's', '--task', 't'];

describe('help', () => {
  it.each([['--help'], ['-h'], ['help']])('lists every command for %s', async (flag) => {
    const run = await cli([flag]);
    expect(run.code).toBe(0);
    for (const { path } of all.filter(({ path }) => path.length === 1)) expect(run.stdout).toContain(path[0]);
    expect(run.stdout).toMatch(/Exit codes:\n {2}0 .*\n {2}1 .*\n {2}2 /);
    expect(run.stdout).toContain('TESSERA_ADMIN_TOKEN');
  });

  it.each(all.map(({ path }) => [path.join(' ')]))(
    'shows the help of %s with --help, -h and help <command>',
    async (name) => {
      const path = name.split(' ');
      const runs = await Promise.all([cli([...path, '--help']), cli([...path, '-h']), cli(['help', ...path])]);
      for (const run of runs) {
        expect(run.code).toBe(0);
        expect(run.stdout).toContain(`Usage: npm run cli -- ${name} `);
        expect(run.stdout).toContain('--url <url>');
      }
      expect(runs[2]?.stdout).toBe(runs[0]?.stdout);
    },
  );

  it('shows the help of a group given without a subcommand, as a usage error', async () => {
    const run = await cli(['agents']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('Usage: npm run cli -- agents [options] [command]');
    expect(run.stderr).toMatch(/^ {2}suspend \[options\] <agent> /m);
  });
});

describe('typos', () => {
  it.each(all.map(({ path }) => [path.join(' ')]))('suggests the command for a slip in "%s"', async (name) => {
    const path = name.split(' ');
    const word = path.at(-1) ?? '';
    const run = await cli([...path.slice(0, -1), slip(word)]);
    expectFailure(run, 2, new RegExp(`unknown command '${slip(word)}'\\n\\(Did you mean ${word}\\?\\)`));
  });

  it.each(all.map(({ path }) => [path.join(' ')]))('suggests the command for a slip in "help %s"', async (name) => {
    const path = name.split(' ');
    const word = path.at(-1) ?? '';
    const run = await cli(['help', ...path.slice(0, -1), slip(word)]);
    expectFailure(run, 2, new RegExp(`Did you mean ${word}\\?`));
  });

  it.each(leaves.map(({ path, command }) => [path.join(' '), command] as const))(
    'suggests the flag for a slip in a flag of "%s"',
    async (name, command) => {
      // A required flag if there is one: its slip must be reported as unknown, not as the flag missing.
      const options = command.options.filter((option) => option.long !== undefined);
      const option = options.find((candidate) => candidate.helpGroupHeading === 'Required:') ?? options[0];
      const flag = option?.long ?? '';
      const typed = `--${slip(flag.slice(2))}`;
      const run = await cli([...name.split(' '), typed, ...(option?.required ? ['value'] : [])]);
      expectFailure(run, 2, new RegExp(`unknown option '${typed}'\\n\\(Did you mean ${flag}\\?\\)`));
    },
  );

  it('suggests a global flag too', async () => {
    const run = await cli(['health', '--ulr', 'http://localhost:1']);
    expectFailure(run, 2, /Did you mean --url\?/);
  });

  it('prints "did you mean" with exit code 2 and no stack from a real process', async () => {
    const run = await spawnCli(['token', '--agnet', 'demo-agent', '--key', KEY_FILE]);
    expectFailure(run, 2, /unknown option '--agnet'\n\(Did you mean --agent\?\)/);
  });
});

describe('usage errors', () => {
  it('names a missing required flag', async () => {
    const run = await cli(['token', '--agent', 'demo-agent', '--key', KEY_FILE]);
    expectFailure(run, 2, /required option '--audience <api>' not specified/);
  });

  it('names a missing argument', async () => {
    const run = await cli(['agents', 'suspend', '--reason', 'x']);
    expectFailure(run, 2, /missing required argument 'agent'/);
  });

  it.each([
    {
      name: 'a --ttl that is not a number',
      argv: [...TOKEN, '--ttl', 'soon'],
      error: /--ttl <seconds>.*'soon' is invalid/,
    },
    {
      name: 'an unknown --decision',
      argv: ['audit', 'list', '--decision', 'maybe'],
      error: /Allowed choices are granted, refused/,
    },
    {
      name: 'a --since that is not a time',
      argv: ['audit', 'list', '--since', 'yesterday'],
      error: /ISO 8601 .* or a time ago/,
    },
    { name: 'an audit --limit over 500', argv: ['audit', 'list', '--limit', '501'], error: /from 1 to 500/ },
    {
      name: 'an unknown --role',
      argv: ['admin-credential', '--id', 'x', '--role', 'root'],
      error: /Allowed choices are admin, approver, auditor/,
    },
    {
      name: 'an --id the broker would not accept',
      argv: ['admin-credential', '--id', 'Alice Oncall'],
      error: /lowercase letters, digits and dashes/,
    },
    {
      name: 'an --audience with a space',
      argv: ['introspection-credential', '--audience', 'https://tickets example.com'],
      error: /give the audience URL/,
    },
    {
      name: 'tokens check without an introspection credential',
      argv: ['tokens', 'check', 'some-token', '--audience', 'https://tickets.example.com'],
      error: /no introspection credential: set TESSERA_INTROSPECTION_CREDENTIAL/,
    },
    {
      name: 'tokens check of something that is no JWT, without --audience',
      argv: ['tokens', 'check', 'some-token'],
      error: /names no audience: pass --audience/,
    },
    { name: 'a --url that is not one', argv: ['health', '--url', 'localhost'], error: /--url is not a URL/ },
    {
      name: 'a --url with a credential in it',
      argv: ['health', '--url', 'https://admin:secret@tessera.example.com'],
      error: /must not carry a credential/,
    },
    {
      name: 'a --url of another scheme',
      argv: ['health', '--url', 'ftp://tessera.example.com'],
      error: /http:\/\/ or https:\/\//,
    },
    {
      name: '--approval-id without --task-id',
      argv: [...TOKEN, '--approval-id', 'a.demo-agent'],
      error: /--approval-id needs --task-id/,
    },
    { name: 'too many arguments', argv: ['agents', 'show', 'a', 'b'], error: /too many arguments for 'show'/ },
  ])('refuses $name', async ({ argv, error }) => {
    expectFailure(await cli(argv), 2, error);
  });

  it('refuses an admin command without a credential, naming the variable and the role', async () => {
    const run = await cli(['agents', 'suspend', 'demo-agent', '--reason', 'x'], {
      env: { TESSERA_URL: await deadUrl() },
    });
    expectFailure(
      run,
      2,
      /no admin credential: set TESSERA_ADMIN_TOKEN \(or pass --admin-token\); this needs the admin role/,
    );
  });

  it('refuses a TESSERA_URL that is not a URL', async () => {
    const run = await cli(['health'], { env: { TESSERA_URL: 'tessera.example.com' } });
    expectFailure(run, 2, /TESSERA_URL is not a URL/);
  });

  it('will not send a credential over plain http to another machine', async () => {
    const run = await cli(['agents', 'list'], { env: adminEnv('http://tessera.example.com') });
    expectFailure(run, 2, /refusing to send a credential over plain http to tessera\.example\.com/);
    expect(run.stderr).not.toContain(adminEnv('').TESSERA_ADMIN_TOKEN);
  });

  it('asks before engaging the kill switch, and refuses without a terminal unless --yes', async () => {
    const env = adminEnv(await deadUrl());
    const declined = await cli(['kill-switch', 'engage', '--reason', 'x'], { env, answer: 'no' });
    expectFailure(declined, 1, /not engaged: not confirmed/);
    expect(declined.stderr).toContain('Engage the kill switch on');
    expectFailure(await cli(['kill-switch', 'engage', '--reason', 'x'], { env }), 2, /pass --yes to confirm/);
  });
});

describe('key files', () => {
  const file = (name: string) => join(tmpdir(), `tessera-cli-${process.pid}-${name}`);

  it.each([
    {
      name: 'missing',
      content: undefined,
      error: /key file not found: .*missing \(make a key pair with: npm run cli -- keygen\)/,
    },
    {
      name: 'not JSON',
      content: 'ssh-ed25519 AAAA',
      error: /is not JSON: expected the private JWK that keygen prints/,
    },
    { name: 'a JSON array', content: '[1, 2]', error: /is not a JWK/ },
    {
      name: 'a public key',
      content: '{"kty":"EC","crv":"P-256","x":"a","y":"b","kid":"k"}',
      error: /holds no private key/,
    },
    { name: 'without a kid', content: '{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}', error: /has no "kid"/ },
    {
      name: 'a broken key',
      content: '{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c","kid":"k"}',
      error: /is not a usable private key/,
    },
  ])('refuses a key file that is $name, for attest and token', async ({ name, content, error }) => {
    const path = file(name.replaceAll(' ', '-'));
    if (content !== undefined) await writeFile(path, content);
    const env = { TESSERA_URL: await deadUrl() };
    expectFailure(await cli(['attest', '--agent', 'demo-agent', '--key', path], { env }), 2, error);
    const token = ['token', '--agent', 'demo-agent', '--key', path, '--audience', 'a', '--scope', 's', '--task', 't'];
    expectFailure(await cli(token, { env }), 2, error);
  });
});

describe('local commands', () => {
  it('makes a key pair whose private half attest accepts', async () => {
    const run = await cli(['keygen', '--kid', 'test-1']);
    expect(run.code).toBe(0);
    const [, privateJwk, , publicJwk] = run.stdout.trim().split('\n');
    expect(JSON.parse(privateJwk ?? '')).toMatchObject({
      kty: 'EC',
      crv: 'P-256',
      kid: 'test-1',
      d: expect.any(String),
    });
    expect(JSON.parse(publicJwk ?? '')).not.toHaveProperty('d');
  });

  it('makes an admin credential and its entry with the role', async () => {
    const run = await cli(['admin-credential', '--id', 'alice-oncall', '--role', 'admin']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^tessera_admin\.alice-oncall\.[A-Za-z0-9_-]{43}$/m);
    expect(run.stdout).toMatch(/- \{ id: alice-oncall, role: admin, secret_sha256: [0-9a-f]{64} \}/);
  });

  it("makes an API's introspection credential and its entry for the audience", async () => {
    const run = await cli(['introspection-credential', '--audience', 'https://tickets.acme.test']);
    expect(run.code).toBe(0);
    const credential = /^tessera_introspection\.([A-Za-z0-9_-]{43})$/m.exec(run.stdout);
    const entry = /- \{ audience: https:\/\/tickets\.acme\.test, introspection_secret_sha256: ([0-9a-f]{64}) \}/.exec(
      run.stdout,
    );
    expect(entry?.[1]).toBe(await secretHash(credential?.[1] ?? ''));
  });
});

describe('old spellings', () => {
  it('still takes "approve ID" and "deny ID", with a note of the new spelling', async () => {
    const run = await cli(['approve', 'a.demo-agent', '--reason', 'x'], { env: adminEnv(await deadUrl(), 'approver') });
    expect(run.stderr).toContain("warning: 'approve' is now 'approvals approve'");
    expectFailure(run, 1, /cannot reach the broker/);
  });

  it('still lists with "approvals" alone and "approvals --status"', async () => {
    const run = await cli(['approvals', '--status', 'denied'], { env: adminEnv(await deadUrl(), 'approver') });
    expectFailure(run, 1, /cannot reach the broker at .*: nothing is listening/);
  });

  it('still reads TESSERA_ADMIN_CREDENTIAL, with a note of the new name', async () => {
    const run = await cli(['agents', 'list'], {
      env: { TESSERA_URL: await deadUrl(), TESSERA_ADMIN_CREDENTIAL: adminEnv('').TESSERA_ADMIN_TOKEN ?? '' },
    });
    expect(run.stderr).toContain('TESSERA_ADMIN_CREDENTIAL is deprecated: set TESSERA_ADMIN_TOKEN');
    expectFailure(run, 1, /cannot reach the broker/);
  });
});

describe('unexpected errors', () => {
  const failing = async (argv: string[]) => {
    let stderr = '';
    const { runCli } = await import('../../scripts/cli/program');
    const code = await runCli(argv, {
      out: () => {
        throw new RangeError('the terminal went away');
      },
      err: (text) => {
        stderr += text;
      },
      env: {},
      interactive: false,
      ask: async () => '',
      readStdin: async () => '',
    });
    return { code, stdout: '', stderr };
  };

  it('says it is a bug, without a stack', async () => {
    const run = await failing(['keygen']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^error: unexpected: the terminal went away \(a bug: run again with --debug/);
    expectNoStack(run);
  });

  it('prints the stack with --debug', async () => {
    const run = await failing(['keygen', '--debug']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/RangeError: the terminal went away\n\s+at /);
  });
});
