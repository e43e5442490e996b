/** `approvals show` names what undoes the action the approval allows, as the grant declares it (`@rollback`). */
import { describe, expect, inject, it } from 'vitest';
import { adminEnv, agentEnvFor, cli, KEY_FILE } from './run';

const url = inject('cliBrokerUrl');
const RUN = Date.now().toString(36);

describe('approvals show', () => {
  it("shows the grant's rollback path to the approver", async () => {
    const asked = await cli(
      [
        'token',
        ...['--agent', 'demo-agent', '--key', KEY_FILE, '--audience', 'https://iam.example.com'],
        ...['--scope', 'iam:disable-user', '--task', "Disable jdoe's account", '--task-id', `T-${RUN}-rollback`],
        ...['--justification', 'INC-4821: phishing in progress'],
      ],
      { env: agentEnvFor(url) },
    );
    expect(asked.code, asked.stderr).toBe(1);
    const approvalId = /^approval_id: (\S+)/m.exec(asked.stdout)?.[1] ?? '';

    const shown = await cli(['approvals', 'show', approvalId], { env: adminEnv(url, 'approver') });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(
      /^undone by: +runbook https:\/\/runbooks\.example\.com\/iam\/enable-user \(grant disable-user-after-approval\)$/m,
    );
    const json = await cli(['approvals', 'show', approvalId, '--json'], { env: adminEnv(url, 'approver') });
    expect(JSON.parse(json.stdout).rollback).toEqual([
      { grant: 'disable-user-after-approval', runbook: 'https://runbooks.example.com/iam/enable-user' },
    ]);
  });
});
