/**
 * `approvals list` a page at a time: `--limit` and `--cursor` walk the listing one page after another, `--all`
 * follows `next_cursor` to the end, and the pending count of each agent is printed under the table.
 */
import { describe, expect, inject, it } from 'vitest';
import { adminEnv, agentEnvFor, cli, eventually, expectFailure, KEY_FILE } from './run';

const url = inject('cliBrokerUrl');
const approver = adminEnv(url, 'approver');
const agentEnv = agentEnvFor(url);
const RUN = Date.now().toString(36);

/** Opens an approval of `iam:disable-user` for a task of its own; returns its id. */
async function openApproval(taskId: string): Promise<string> {
  const run = await cli(
    [
      'token',
      ...['--agent', 'demo-agent', '--key', KEY_FILE, '--audience', 'https://iam.example.com'],
      ...['--scope', 'iam:disable-user', '--task', "Disable jdoe's account", '--task-id', taskId],
      ...['--justification', 'INC-4821: phishing in progress'],
    ],
    { env: agentEnv },
  );
  expect(run.code, run.stderr).toBe(1);
  const id = /^approval_id: (\S+)/m.exec(run.stdout)?.[1];
  if (id === undefined) throw new Error(`no approval id in ${run.stdout}`);
  return id;
}

interface Listing {
  approvals: { id: string }[];
  next_cursor: string | null;
  agents: { agent: string; count: number }[];
}

describe('approvals list, paged', () => {
  it('follows next_cursor to the end with --all, and page by page with --cursor', async () => {
    const opened: string[] = [];
    for (const n of [1, 2, 3]) opened.push(await openApproval(`T-${RUN}-page-${n}`));

    const all = await eventually('every approval opened, listed', async () => {
      const run = await cli(['approvals', 'list', '--agent', 'demo-agent', '--limit', '1', '--all', '--json'], {
        env: approver,
      });
      expect(run.code, run.stderr).toBe(0);
      const listing = JSON.parse(run.stdout) as Listing;
      const ids = listing.approvals.map((approval) => approval.id);
      return opened.every((id) => ids.includes(id)) ? listing : undefined;
    });
    const ids = all.approvals.map((approval) => approval.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(all.next_cursor).toBeNull();
    expect(all.agents).toEqual([{ agent: 'demo-agent', count: expect.any(Number) }]);
    // Oldest first: in the order they were opened.
    expect(ids.filter((id) => opened.includes(id))).toEqual(opened);

    // By hand: each page names the cursor of the next, until the last.
    const walked: string[] = [];
    let cursor: string[] = [];
    // Other files' approvals come and go on the same broker meanwhile: only this test's are compared.
    for (let page = 0; page <= ids.length + 20; page += 1) {
      const run = await cli(['approvals', 'list', '--agent', 'demo-agent', '--limit', '1', ...cursor], {
        env: approver,
      });
      expect(run.code, run.stderr).toBe(0);
      walked.push(...[...run.stdout.matchAll(/^(\S+\.demo-agent) /gm)].map((match) => match[1] ?? ''));
      expect(run.stdout).toMatch(/^pending by agent: demo-agent \d+$/m);
      const next = /^more approvals: add --cursor (\S+), or --all$/m.exec(run.stdout)?.[1];
      if (next === undefined) break;
      cursor = ['--cursor', next];
    }
    expect(walked.filter((id) => opened.includes(id))).toEqual(opened);
  });

  it('refuses a page size the listing does not take, before asking the broker', async () => {
    const run = await cli(['approvals', 'list', '--limit', '201'], { env: approver });
    expectFailure(run, 2, /expected a whole number from 1 to 200/);
  });

  it('says what the broker refuses in a cursor', async () => {
    const run = await cli(['approvals', 'list', '--cursor', 'not-a-cursor'], { env: approver });
    expectFailure(run, 1, /invalid cursor/);
  });
});
