/**
 * The CLI against a real local broker: tokens (and the step-up flow), revoking tokens and tasks, the audit
 * log and its chain, health, and the broker's refusals (401, 403, 404). The commands a user runs most are
 * run as child processes; the rest in-process, through the same code.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import {
  adminEnv,
  agentEnvFor,
  claims,
  cli,
  demoAgentToken,
  eventually,
  expectFailure,
  KEY_FILE,
  type Run,
  spawnCli,
} from './run';

const url = inject('cliBrokerUrl');
const admin = adminEnv(url);
const approver = adminEnv(url, 'approver');
const auditor = adminEnv(url, 'auditor');
const agentEnv = agentEnvFor(url);
/** Makes this file's task ids its own. */
const RUN = Date.now().toString(36);

const TICKETS = ['--agent', 'demo-agent', '--key', KEY_FILE, '--audience', 'https://tickets.example.com'];

function tokenArgs(taskId: string, scope = 'tickets:read tickets:comment'): string[] {
  return ['token', ...TICKETS, '--scope', scope, '--task', `Summarise ticket ${taskId}`, '--task-id', taskId];
}

/** A fresh token of `taskId`, from `token --json`. */
async function token(taskId: string): Promise<string> {
  const run = await cli([...tokenArgs(taskId), '--json'], { env: agentEnv });
  expect(run.code, run.stderr).toBe(0);
  return (JSON.parse(run.stdout) as { access_token: string }).access_token;
}

/** Runs until it exits 0 (what it reads reaches the audit log a moment after the decision). */
function succeeds(what: string, run: () => Promise<Run>): Promise<Run> {
  return eventually(what, async () => {
    const result = await run();
    return result.code === 0 ? result : undefined;
  });
}

/** The words of a command line as printed for copying: plain words and single-quoted ones. */
function shellWords(line: string): string[] {
  return [...line.matchAll(/'((?:[^']|'\\'')*)'|(\S+)/g)].map(([, quoted, plain]) =>
    quoted === undefined ? (plain ?? '') : quoted.replaceAll(`'\\''`, "'"),
  );
}

describe('health', () => {
  it('says the broker is up, and what it does not check', async () => {
    const run = await cli(['health'], { env: agentEnv });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe(
      `ok: the broker at ${url} is up (issuer ${url}, policy ${JSON.parse((await cli(['health', '--json'], { env: agentEnv })).stdout).policy}); liveness only, no store checked\n`,
    );
  });

  it('prints the answer with --json', async () => {
    const run = await cli(['health', '--json'], { env: agentEnv });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ status: 'ok', issuer: url, policy: expect.any(String) });
  });
});

describe('token', () => {
  it('gets a token for the task and prints it with its scope and expiry', async () => {
    const taskId = `T-${RUN}-granted`;
    const run = await spawnCli(tokenArgs(taskId), { env: agentEnv });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^granted: +a Bearer token for https:\/\/tickets\.example\.com$/m);
    expect(run.stdout).toMatch(/^scope: +tickets:read tickets:comment$/m);
    expect(run.stdout).toContain(`task_id:      ${taskId}`);
    const accessToken = /^access_token: (\S+)$/m.exec(run.stdout)?.[1] ?? '';
    expect(claims(accessToken)).toMatchObject({
      sub: 'demo-agent',
      aud: 'https://tickets.example.com',
      task: { id: taskId },
    });
  });

  it("prints the broker's answer with --json", async () => {
    const run = await cli([...tokenArgs(`T-${RUN}-json`), '--ttl', '60', '--json'], { env: agentEnv });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ token_type: 'Bearer', expires_in: 60, task_id: `T-${RUN}-json` });
  });

  it('says why when policy refuses', async () => {
    const run = await cli(tokenArgs(`T-${RUN}-refused`, 'tickets:delete'), { env: agentEnv });
    expectFailure(run, 1, /^error: no token \(400 invalid_scope: a requested action is not granted\)\n$/);
  });

  it('binds the token to a DPoP key from a file', async () => {
    const keygen = await cli(['keygen', '--kid', 'dpop-1']);
    const { writeFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(tmpdir(), `tessera-cli-dpop-${RUN}.json`);
    await writeFile(file, keygen.stdout.split('\n')[1] ?? '');
    const run = await cli([...tokenArgs(`T-${RUN}-dpop`), '--dpop', file, '--json'], { env: agentEnv });
    expect(run.code, run.stderr).toBe(0);
    const answer = JSON.parse(run.stdout) as { token_type: string; access_token: string };
    expect(answer.token_type).toBe('DPoP');
    expect(claims(answer.access_token).cnf).toEqual({ jkt: expect.any(String) });
  });
});

describe('step-up approval', () => {
  const ask = (taskId: string) => [
    ...demoAgentToken('https://iam.example.com', 'iam:disable-user', "Disable jdoe's account"),
    '--justification',
    'INC-4821: phishing in progress',
    '--task-id',
    taskId,
  ];

  /** The pending approval of `taskId`, once the approvals list shows it. */
  const pendingOf = (taskId: string) =>
    eventually(`the approval of ${taskId}`, async () => {
      const run = await cli(['approvals', 'list', '--json'], { env: approver });
      const { approvals } = JSON.parse(run.stdout) as { approvals: { id: string; task: { id: string } }[] };
      return approvals.find((approval) => approval.task.id === taskId)?.id;
    });

  it('is pending, approved from the CLI, and collected exactly once with the printed command', async () => {
    const taskId = `T-${RUN}-step-up`;
    const pending = await spawnCli(ask(taskId), { env: agentEnv });
    expectFailure(pending, 1, /^error: no token yet: approval \S+ is pending\n$/);
    const approvalId = /^approval_id: (\S+)/m.exec(pending.stdout)?.[1] ?? '';
    expect(approvalId).toMatch(/\.demo-agent$/);
    expect(pending.stdout).toContain(`npm run cli -- approvals approve ${approvalId} --reason`);
    const collect = /^ {2}(npm run cli -- token .*)$/m.exec(pending.stdout)?.[1] ?? '';
    expect(collect).toContain(`--task-id ${taskId} --approval-id ${approvalId}`);

    expect(await pendingOf(taskId)).toBe(approvalId);
    const list = await cli(['approvals', 'list'], { env: approver });
    expect(list.stdout).toMatch(
      new RegExp(`^${approvalId.replace('.', '\\.')} +demo-agent +iam:disable-user +https://iam\\.example\\.com`, 'm'),
    );
    const shown = await cli(['approvals', 'show', approvalId], { env: approver });
    expect(shown.stdout).toMatch(/^status: +pending$/m);
    expect(shown.stdout).toMatch(/^approvers: +0 of 1 approvals, in security, not the owner$/m);

    const approved = await spawnCli(['approvals', 'approve', approvalId, '--reason', 'confirmed on the bridge'], {
      env: approver,
    });
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toBe(`approved ${approvalId}: 1 of 1 approvals; the agent can collect its token now\n`);

    // The printed command, as a user would paste it (after the interval).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const words = shellWords(collect).slice(4);
    const collected = await spawnCli(words, { env: agentEnv });
    expect(collected.code, collected.stderr).toBe(0);
    const accessToken = /^access_token: (\S+)$/m.exec(collected.stdout)?.[1] ?? '';
    expect(claims(accessToken).approval).toEqual({ id: approvalId, by: 'demo-approver' });

    const again = await cli(words, { env: agentEnv });
    expectFailure(again, 1, /no token \(400 invalid_grant: the approval has already been used\)/);
    const granted = await succeeds('the grant in the audit log', async () => {
      const run = await cli(
        ['audit', 'list', '--task', taskId, '--event', 'token.exchange', '--decision', 'granted', '--json'],
        { env: admin },
      );
      return (JSON.parse(run.stdout) as { records: unknown[] }).records.length > 0 ? run : { ...run, code: 1 };
    });
    expect((JSON.parse(granted.stdout) as { records: unknown[] }).records).toHaveLength(1);
  });

  it('with --wait, polls until approved and prints the token', async () => {
    const taskId = `T-${RUN}-wait`;
    const waiting = cli([...ask(taskId), '--wait'], { env: agentEnv });
    const approvalId = await pendingOf(taskId);
    expect((await cli(['approvals', 'approve', approvalId, '--reason', 'ok'], { env: approver })).code).toBe(0);
    const run = await waiting;
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(`waiting for a decision on approval ${approvalId}`);
    expect(claims(/^access_token: (\S+)$/m.exec(run.stdout)?.[1] ?? '').approval).toMatchObject({ id: approvalId });
  });

  it('with --wait, stops when denied and says so', async () => {
    const taskId = `T-${RUN}-denied`;
    const waiting = cli([...ask(taskId), '--wait'], { env: agentEnv });
    const approvalId = await pendingOf(taskId);
    const denied = await cli(['approvals', 'deny', approvalId, '--reason', 'not this account'], { env: approver });
    expect(denied.stdout).toBe(`denied ${approvalId}: 0 of 1 approvals; it is denied\n`);
    expectFailure(await waiting, 1, /no token \(400 access_denied: the approval was denied\)/);
  });

  it('refuses to decide as an admin, or an approval that does not exist', async () => {
    const taskId = `T-${RUN}-roles`;
    await cli(ask(taskId), { env: agentEnv });
    const approvalId = await pendingOf(taskId);
    expectFailure(
      await cli(['approvals', 'approve', approvalId, '--reason', 'x'], { env: admin }),
      1,
      /^error: the admin credential lacks the approver role \(403 insufficient_scope: /,
    );
    expectFailure(
      await cli(['approvals', 'show', 'nope.demo-agent'], { env: approver }),
      1,
      /^error: no approval 'nope\.demo-agent': 'approvals list' shows the pending ones \(404 not_found: /,
    );
  });
});

describe('tokens and tasks', () => {
  it('checks a token, revokes it by its jti, and then finds it inactive', async () => {
    const accessToken = await token(`T-${RUN}-revoke`);
    const active = await cli(['tokens', 'check', '-'], { env: agentEnv, stdin: `${accessToken}\n` });
    expect(active.code, active.stderr).toBe(0);
    expect(active.stdout).toMatch(/^active: +yes, a Bearer token$/m);
    expect(active.stdout).toContain(`task_id:  T-${RUN}-revoke`);

    const jti = String(claims(accessToken).jti);
    const revoked = await succeeds('revoking by jti', () =>
      cli(['tokens', 'revoke', jti, '--reason', 'pasted into a ticket'], { env: admin }),
    );
    expect(revoked.stdout).toBe(`revoked token ${jti} of demo-agent\n`);
    expectFailure(
      await cli(['tokens', 'check', accessToken], { env: agentEnv }),
      1,
      /^error: the token is not active: /,
    );
    expect(JSON.parse((await cli(['tokens', 'check', accessToken, '--json'], { env: agentEnv })).stdout)).toEqual({
      active: false,
    });
  });

  it("checks a token as its API only: another API's credential is refused, and to another API it is inactive", async () => {
    const accessToken = await token(`T-${RUN}-audience`);
    const graph = 'https://graph.example.com';
    expectFailure(
      await cli(['tokens', 'check', accessToken], { env: agentEnvFor(url, graph) }),
      1,
      /^error: the broker does not accept the introspection credential of https:\/\/tickets\.example\.com: check TESSERA_INTROSPECTION_CREDENTIAL \(and --audience\) \(401 invalid_client: /,
    );
    expectFailure(
      await cli(['tokens', 'check', accessToken, '--audience', graph], { env: agentEnvFor(url, graph) }),
      1,
      /^error: the token is not active: .*, or not one for https:\/\/graph\.example\.com\n$/,
    );
  });

  it('completes a task with one of its tokens, as the agent does', async () => {
    const taskId = `T-${RUN}-complete`;
    const accessToken = await token(taskId);
    const other = await token(`T-${RUN}-other`);
    expectFailure(
      await cli(['tasks', 'complete', taskId, '--token', other], { env: agentEnv }),
      1,
      new RegExp(`the token is not one of task '${taskId}' \\(403 insufficient_scope: `),
    );
    const run = await cli(['tasks', 'complete', taskId, '--token', '-'], { env: agentEnv, stdin: accessToken });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe(`completed task ${taskId}: every token of it is revoked\n`);
    expect((await cli(['tokens', 'check', accessToken], { env: agentEnv })).code).toBe(1);
  });

  it('revokes a task as an admin: its tokens die and it gets no new one', async () => {
    const taskId = `T-${RUN}-hijacked`;
    const accessToken = await token(taskId);
    const run = await succeeds('revoking the task', () =>
      cli(['tasks', 'revoke', taskId, '--reason', 'task hijacked'], { env: admin }),
    );
    expect(run.stdout).toBe(`revoked task ${taskId}: every token of it is dead (agents: demo-agent)\n`);
    expect((await cli(['tokens', 'check', accessToken], { env: agentEnv })).code).toBe(1);
    expectFailure(
      await cli(tokenArgs(taskId), { env: agentEnv }),
      1,
      /no token \(400 invalid_request: the task is finished\)/,
    );
  });

  it('says what a 404 means for a jti or a task the audit log does not know', async () => {
    expectFailure(
      await cli(['tokens', 'revoke', 'no-such-jti', '--reason', 'x'], { env: admin }),
      1,
      /^error: the audit log has no token issued with jti 'no-such-jti': check the jti \(404 not_found: /,
    );
    expectFailure(
      await cli(['tasks', 'revoke', 'no-such-task', '--reason', 'x'], { env: admin }),
      1,
      /^error: the audit log has no token issued for task 'no-such-task': check the task id \(404 not_found: /,
    );
  });
});

describe('audit', () => {
  it('lists records as a table, and as the broker answers with --json', async () => {
    const taskId = `T-${RUN}-audit`;
    await token(taskId);
    await cli(tokenArgs(taskId, 'tickets:delete'), { env: agentEnv });
    const filter = ['audit', 'list', '--task', taskId];
    const json = await succeeds('both decisions in the audit log', async () => {
      const run = await cli([...filter, '--json'], { env: auditor });
      return (JSON.parse(run.stdout) as { records: unknown[] }).records.length === 2 ? run : { ...run, code: 1 };
    });
    const { records, next_cursor } = JSON.parse(json.stdout) as {
      records: { seq: number; decision: string; event: string; task_id: string; hash: unknown }[];
      next_cursor: unknown;
    };
    expect(records.map((record) => record.decision)).toEqual(['refused', 'granted']);
    expect(next_cursor).toBeNull();
    expect(records[0]).toHaveProperty('hash');

    const run = await cli(filter, { env: auditor });
    expect(run.code, run.stderr).toBe(0);
    const [header, refused, granted] = run.stdout.trim().split('\n');
    expect(header?.split(/\s{2,}/)).toEqual(['SEQ', 'TIME', 'EVENT', 'DECISION', 'AGENT', 'BY', 'ON', 'WHY']);
    expect(refused).toMatch(
      new RegExp(
        `^${records[0]?.seq} +\\S+Z +token\\.exchange +refused +demo-agent +${taskId} +invalid_scope: action_not_granted$`,
      ),
    );
    expect(granted).toMatch(
      new RegExp(
        `^${records[1]?.seq} +\\S+Z +token\\.exchange +granted +demo-agent +${taskId} +tickets:read tickets:comment$`,
      ),
    );
  });

  it('filters by agent, decision, event and time, and pages', async () => {
    const list = async (...argv: string[]) => {
      const run = await cli(['audit', 'list', ...argv, '--json'], { env: auditor });
      expect(run.code, run.stderr).toBe(0);
      return JSON.parse(run.stdout) as {
        records: { seq: number; agent: string | null; decision: string; event: string; at: number }[];
        next_cursor: string | null;
      };
    };
    const refused = await list(
      '--agent',
      'demo-agent',
      '--decision',
      'refused',
      '--event',
      'token.exchange',
      '--since',
      '1h',
    );
    expect(refused.records.length).toBeGreaterThan(0);
    for (const record of refused.records) {
      expect(record).toMatchObject({ agent: 'demo-agent', decision: 'refused', event: 'token.exchange' });
      expect(record.at).toBeGreaterThan(Date.now() - 3600_000);
    }
    const old = new Date(Date.now() - 30 * 86_400_000).toISOString();
    expect((await list('--until', old)).records).toEqual([]);
    expect((await cli(['audit', 'list', '--until', old], { env: auditor })).stdout).toBe('no records match\n');

    const first = await list('--limit', '1');
    expect(first.records).toHaveLength(1);
    expect(first.next_cursor).not.toBeNull();
    const second = await list('--limit', '1', '--cursor', first.next_cursor ?? '');
    expect(second.records[0]?.seq).toBeLessThan(first.records[0]?.seq ?? 0);
    const table = await cli(['audit', 'list', '--limit', '1'], { env: auditor });
    expect(table.stdout).toMatch(/^more records: add --cursor \d+, or --all$/m);

    const all = await list('--event', 'token.exchange', '--limit', '2', '--all');
    expect(all.next_cursor).toBeNull();
    expect(all.records.length).toBeGreaterThan(2);
    expect(new Set(all.records.map((record) => record.seq)).size).toBe(all.records.length);
  });

  it('verifies the chain', async () => {
    const run = await cli(['audit', 'verify'], { env: auditor });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      /^the audit chain holds: \d+ records, head seq \d+ \([0-9a-f]{64}\); \d+ decision-time chains, \d+ records\n$/,
    );
    const json = JSON.parse((await cli(['audit', 'verify', '--json'], { env: auditor })).stdout);
    expect(json).toMatchObject({ valid: true, problems: [] });
  });

  it('shows the backlog on its way to D1, what the queue’s consumer has written, and the hot window', async () => {
    const run = await cli(['audit', 'backlog'], { env: auditor });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^(nothing waits for D1|\d+ records wait for D1, the oldest for [\d.]+ s)\n/);
    expect(run.stdout).toMatch(/^D1: \d+ write queries, \d+ records written, 0 deliveries retried\n/m);
    expect(run.stdout).toMatch(/^hot window: [\d.]+ MB of [\d.]+ MB, \d+ records/m);
    expect(run.stdout).toMatch(/^archive: \d+ segments, \d+ records\n/m);
    const json = JSON.parse((await cli(['audit', 'backlog', '--json'], { env: auditor })).stdout) as {
      d1: { write_queries: number; records_written: number };
    };
    expect(json.d1.records_written).toBeGreaterThan(0);
    expect(json.d1.write_queries).toBeGreaterThan(0);
  });
});

describe('audit: the archive and an export', () => {
  it('lists no segment before anything is old enough to archive', async () => {
    const run = await cli(['audit', 'archive'], { env: auditor });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe('nothing is archived yet\n');
    expect(JSON.parse((await cli(['audit', 'archive', '--json'], { env: auditor })).stdout)).toEqual({ segments: [] });
  });

  it('exports a time range as NDJSON, a record per line in seq order, in the archive’s form', async () => {
    const taskId = `T-${RUN}-export`;
    const jti = claims(await token(taskId)).jti;
    const out = join(await mkdtemp(join(tmpdir(), 'tessera-export-')), 'export.ndjson');
    const lines = await eventually('the token’s record in an export', async () => {
      const run = await cli(
        ['audit', 'export', '--since', '1h', '--until', new Date(Date.now() + 60_000).toISOString(), '--out', out],
        {
          env: auditor,
        },
      );
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/^\d+ records from .* written to /);
      const records = (await readFile(out, 'utf8'))
        .split('\n')
        .filter((line) => line.length > 0)
        .map(
          (line) => JSON.parse(line) as { seq: number; token_jti: string | null; detail: unknown; seal_hash: unknown },
        );
      return records.some((record) => record.token_jti === jti) ? records : undefined;
    });
    const seqs = lines.map((record) => record.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    const record = lines.find((line) => line.token_jti === jti);
    expect(typeof record?.detail === 'string' || record?.detail === null).toBe(true);
    expect(record).toHaveProperty('seal_hash');
  });
});

describe('refusals', () => {
  it('says when the broker does not accept the credential (401)', async () => {
    const run = await cli(['audit', 'list'], {
      env: { TESSERA_URL: url, TESSERA_ADMIN_TOKEN: 'tessera_admin.nobody.xxx' },
    });
    expectFailure(
      run,
      1,
      /^error: the broker does not accept the admin credential: check TESSERA_ADMIN_TOKEN or --admin-token \(401 invalid_token: /,
    );
    expect(run.stderr).not.toContain('tessera_admin.nobody.xxx');
  });

  it('names the role a credential lacks (403)', async () => {
    expectFailure(
      await cli(['agents', 'suspend', 'demo-agent', '--reason', 'x'], { env: auditor }),
      1,
      /^error: the admin credential lacks the admin role \(403 insufficient_scope: this call needs the role admin; the credential has auditor\): use one that has it\n$/,
    );
  });

  it('names what was not found (404)', async () => {
    expectFailure(
      await cli(['agents', 'show', 'nobody'], { env: auditor }),
      1,
      /^error: no agent 'nobody' in the inventory: 'agents list' shows them \(404 not_found: /,
    );
  });

  it('takes the credential from --admin-token too', async () => {
    const run = await cli([
      '--admin-token',
      auditor.TESSERA_ADMIN_TOKEN ?? '',
      'agents',
      'show',
      'demo-agent',
      '--url',
      url,
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).not.toContain(auditor.TESSERA_ADMIN_TOKEN ?? '');
  });
});
