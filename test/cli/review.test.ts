/**
 * `npm run cli -- review` against a real local broker: the table a person reads, the Markdown and CSV an
 * auditor files, the JSON of `GET /admin/review`, and the narrowing written as a diff.
 */
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { Review } from '../../scripts/cli/commands/review';
import { PROJECT_ROOT } from '../../scripts/lib/local-broker';
import { compilePolicyFolder } from '../../scripts/policy/compile';
import { runPolicyTests } from '../../scripts/policy/tests';
import { adminEnv, agentEnvFor, cli, demoAgentToken, eventually, expectFailure } from './run';

const url = inject('cliBrokerUrl');
const auditor = adminEnv(url, 'auditor');
const approver = adminEnv(url, 'approver');

const AGENTS = ['attack-path-scanner', 'demo-agent', 'graph-indexer', 'release-bot'];

async function review(args: string[] = []): Promise<Review> {
  const run = await cli(['review', '--format', 'json', ...args], { env: auditor });
  expect(run.code, run.stderr).toBe(0);
  return Review.parse(JSON.parse(run.stdout));
}

describe('review', () => {
  it('prints a table of every agent, the lists to act on, and every entitlement, unused ones marked', async () => {
    const token = await cli(demoAgentToken('https://tickets.example.com', 'tickets:read', 'Summarise ticket T-1'), {
      env: agentEnvFor(url),
    });
    expect(token.code, token.stderr).toBe(0);
    // The token's record reaches D1, and its count, a moment after the token.
    await eventually('the token counted', async () => {
      const counted = (await review(['--days', '30'])).agents.find((a) => a.agent === 'demo-agent');
      return counted !== undefined && counted.tokens > 0 ? counted : undefined;
    });
    const run = await cli(['review', '--days', '30'], { env: auditor });
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines[0]).toMatch(
      /^access review of 30 days, \d{4}-\d{2}-\d{2} to \d{4}-\d{2}-\d{2} \(policy [0-9a-f]{16}\)$/,
    );
    expect(lines[2]).toMatch(
      /^agent\s+owner\s+attests\s+tokens\s+last token\s+review by\s+expires\s+refusals\s+approvals\s+needs a look$/,
    );
    for (const agent of AGENTS) expect(run.stdout).toMatch(new RegExp(`^${agent}\\s`, 'm'));
    expect(run.stdout).toMatch(/^demo-agent\s+alice@example\.com\s+self_signed\s+[1-9]/m);
    expect(run.stdout).toMatch(/^stale \(no token in 30 days\): .*attack-path-scanner/m);
    expect(run.stdout).toMatch(
      /^orphaned \(owner is no admin or approver\): attack-path-scanner, graph-indexer, release-bot$/m,
    );
    expect(run.stdout).toMatch(
      /^demo-agent\s+https:\/\/tickets\.example\.com\s+tickets:read\s+allowed\s+always\s+[1-9]\d*\s*$/m,
    );
    expect(run.stdout).toMatch(
      /^demo-agent\s+https:\/\/graph\.example\.com\s+graph:read\s+allowed\s+always\s+0\s+UNUSED$/m,
    );
    expect(run.stdout).toMatch(/unused entitlements: --narrowing FILE writes a diff/);
  });

  it('writes Markdown and CSV for an auditor’s file, and JSON as the broker answers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tessera-review-'));
    const md = join(dir, 'review.md');
    const written = await cli(['review', '--format', 'md', '--out', md], { env: auditor });
    expect(written.code, written.stderr).toBe(0);
    expect(written.stdout).toBe(`the review of 4 agents written to ${md}\n`);
    const markdown = await readFile(md, 'utf8');
    expect(markdown).toMatch(/^# Access review, \d{4}-\d{2}-\d{2} to \d{4}-\d{2}-\d{2}\n/);
    expect(markdown).toContain('| agent | owner | attests |');
    expect(markdown).toContain('```diff\ndiff --git a/policies/review-');

    const csv = await cli(['review', '--format', 'csv'], { env: auditor });
    expect(csv.code, csv.stderr).toBe(0);
    const rows = csv.stdout.split('\r\n').filter((line) => line !== '');
    expect(rows[0]).toBe(
      'agent,owner,attestation,review_by,expires,past_review,expired,stale,orphaned,tokens,last_token,audience,action,condition,hours,granted,used',
    );
    const json = await review(['--days', '90']);
    expect(rows).toHaveLength(1 + json.agents.reduce((n, a) => n + Math.max(1, a.entitlements.length), 0));
    expect(
      rows.some((row) => /^demo-agent,.*,https:\/\/graph\.example\.com,graph:read,allowed,always,0,false$/.test(row)),
    ).toBe(true);
    expect(json.agents.map((a) => a.agent)).toEqual(AGENTS);
  });

  it('writes the suggested narrowing as a diff that passes policy:check, leaving out what a policy test needs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tessera-review-'));
    const diff = join(dir, 'review.diff');
    const run = await cli(['review', '--format', 'json', '--out', join(dir, 'review.json'), '--narrowing', diff], {
      env: auditor,
    });
    expect(run.code, run.stderr).toBe(0);
    const json = Review.parse(JSON.parse(await readFile(join(dir, 'review.json'), 'utf8')));
    const forbids = Number(/^(\d+) forbids written to /m.exec(run.stdout)?.[1]);
    const leftOut = run.stderr.split('\n').filter((line) => line.startsWith('left out: '));
    expect(forbids).toBeGreaterThan(0);
    expect(forbids + leftOut.length).toBe(json.narrowing?.forbids);
    // release-bot's one entitlement is what its policy test asks for: left out.
    expect(leftOut).toContain(
      'left out: release-bot tickets:comment on https://tickets.example.com, which a policy test of release-bot needs',
    );
    // Applied to a copy of the policy as an admin would, it passes policy:check.
    await cp(join(PROJECT_ROOT, 'policies'), join(dir, 'policies'), { recursive: true });
    execFileSync('git', ['apply', diff], { cwd: dir });
    const { bundle, problems } = await compilePolicyFolder(join(dir, 'policies'));
    expect(problems).toEqual([]);
    if (bundle === undefined) throw new Error('the narrowed policy does not compile');
    const tests = await runPolicyTests(join(dir, 'policies/tests'), bundle);
    expect(tests.outcomes.filter((outcome) => outcome.failure !== undefined)).toEqual([]);
    expect(Object.keys(bundle.cedar.grants).filter((id) => id.startsWith('review-'))).toHaveLength(forbids);
  });

  it('reviews some agents only, with --agent or --attention, their narrowing as the broker makes it', async () => {
    const whole = await review();
    const two = await review(['--agent', 'graph-indexer', 'release-bot']);
    expect(two.agents.map((a) => a.agent)).toEqual(['graph-indexer', 'release-bot']);
    expect(two.stale).toEqual(whole.stale.filter((id) => id === 'graph-indexer' || id === 'release-bot'));
    expect(two.narrowing?.forbids).toBe(two.agents.reduce((n, a) => n + a.unused.length, 0));
    expect(two.narrowing?.cedar).toContain('principal == Agent::"graph-indexer"');
    expect(two.narrowing?.cedar).not.toContain('principal == Agent::"demo-agent"');
    // Every agent, one by one: the narrowings add up to the broker's own.
    const one = await Promise.all(AGENTS.map((agent) => review(['--agent', agent])));
    expect(one.reduce((n, r) => n + (r.narrowing?.forbids ?? 0), 0)).toBe(whole.narrowing?.forbids ?? 0);

    const attention = await review(['--attention']);
    const needs = (a: Review['agents'][number]) =>
      a.expired || a.past_review || a.stale || a.orphaned || a.unused.length > 0;
    expect(attention.agents.map((a) => a.agent)).toEqual(whole.agents.filter(needs).map((a) => a.agent));
    expect(attention.agents.length).toBeGreaterThan(0);

    expectFailure(await cli(['review', '--agent', 'nobody'], { env: auditor }), 1, /no agent nobody in the review/);
  });

  it('refuses a bad window as a usage error, and a role that may not read it', async () => {
    expectFailure(await cli(['review', '--days', '0'], { env: auditor }), 2, /from 1 to 366/);
    expectFailure(
      await cli(['review', '--format', 'xml'], { env: auditor }),
      2,
      /table, md, csv, json|Allowed choices/,
    );
    expectFailure(await cli(['review'], { env: approver }), 1, /admin or auditor/);
  });
});
