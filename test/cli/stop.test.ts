/**
 * Stopping issuance from the CLI, against a broker of its own (what it stops would refuse other files'
 * tokens): the global kill switch, and suspending, resuming and revoking one agent.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { adminEnv, agentEnvFor, claims, cli, demoAgentToken, expectFailure, spawnCli } from './run';

const url = inject('cliStopBrokerUrl');
const admin = adminEnv(url);
const auditor = adminEnv(url, 'auditor');
const agentEnv = agentEnvFor(url);
const RUN = Date.now().toString(36);

const TOKEN = demoAgentToken('https://tickets.example.com', 'tickets:read', 'Read ticket T-1');

async function token(): Promise<string> {
  const run = await cli([...TOKEN, '--json'], { env: agentEnv });
  expect(run.code, run.stderr).toBe(0);
  return (JSON.parse(run.stdout) as { access_token: string }).access_token;
}

afterAll(async () => {
  // Leave the broker issuing, whatever failed.
  await cli(['kill-switch', 'release', '--reason', 'test cleanup'], { env: admin });
  await cli(['agents', 'resume', 'demo-agent', '--reason', 'test cleanup'], { env: admin });
});

describe('kill-switch', () => {
  it('engages, shows its state, refuses the next token, and releases', async () => {
    const before = await cli(['kill-switch', 'status'], { env: auditor });
    expect(before.stdout).toMatch(/^kill switch released: /);
    const held = await token();

    const reason = `INC-${RUN}: leaked agent credentials`;
    const engaged = await spawnCli(['kill-switch', 'engage', '--reason', reason, '--yes'], { env: admin });
    expect(engaged.code, engaged.stderr).toBe(0);
    expect(engaged.stdout).toMatch(/^kill switch ENGAGED: no token is issued anywhere/);
    expect(engaged.stdout).toMatch(/^shards: +128 of 128 at this version$/m);

    const status = await cli(['kill-switch', 'status'], { env: auditor });
    expect(status.stdout).toMatch(/^kill switch ENGAGED/);
    expect(status.stdout).toContain(`reason:  ${reason}`);
    expect(status.stdout).toMatch(/^by: +demo-admin$/m);
    expect(JSON.parse((await cli(['kill-switch', 'status', '--json'], { env: auditor })).stdout)).toMatchObject({
      engaged: true,
      reason,
      by: 'demo-admin',
    });

    expectFailure(
      await cli(TOKEN, { env: agentEnv }),
      1,
      /^error: no token: the agent is suspended or the kill switch is engaged \(403 access_denied: token issuance is stopped by the global kill switch\)\n$/,
    );
    expect((await cli(['tokens', 'check', held], { env: agentEnv })).code).toBe(1);

    const released = await cli(['kill-switch', 'release', '--reason', `INC-${RUN} contained`], { env: admin });
    expect(released.code, released.stderr).toBe(0);
    expect(released.stdout).toMatch(/^kill switch released: /);
    expect((await cli(['tokens', 'check', held], { env: agentEnv })).code).toBe(0);
    await token();
  });

  it('refuses an auditor who tries to engage it', async () => {
    expectFailure(
      await cli(['kill-switch', 'engage', '--reason', 'x', '--yes'], { env: auditor }),
      1,
      /the admin credential lacks the admin role \(403 insufficient_scope/,
    );
    expect((await cli(['kill-switch', 'status', '--json'], { env: auditor })).stdout).toContain('"engaged": false');
  });
});

describe('agents', () => {
  it('lists the inventory with owners and state', async () => {
    const run = await cli(['agents', 'list'], { env: auditor });
    expect(run.code, run.stderr).toBe(0);
    const [header, ...rows] = run.stdout.trim().split('\n');
    expect(header?.split(/\s{2,}/)).toEqual(['AGENT', 'STATE', 'OWNER', 'ATTESTS', 'LAST CHANGE']);
    expect(rows.map((row) => row.split(/\s+/)[0])).toEqual([
      'attack-path-scanner',
      'demo-agent',
      'graph-indexer',
      'release-bot',
    ]);
    expect(run.stdout).toMatch(/^demo-agent +active +alice@example\.com +self-signed \(demo-agent-1\) +-$/m);

    const page = JSON.parse((await cli(['agents', 'list', '--limit', '2', '--json'], { env: auditor })).stdout) as {
      agents: { agent: string }[];
      next_cursor: string | null;
    };
    expect(page.agents.map((agent) => agent.agent)).toEqual(['attack-path-scanner', 'demo-agent']);
    expect(page.next_cursor).toBe('demo-agent');
    const rest = await cli(['agents', 'list', '--limit', '2', '--cursor', 'demo-agent'], { env: auditor });
    expect(rest.stdout).not.toContain('demo-agent ');
    const all = JSON.parse((await cli(['agents', 'list', '--limit', '1', '--all', '--json'], { env: auditor })).stdout);
    expect(all.agents).toHaveLength(4);
  });

  it('suspends, shows, resumes and revokes an agent', async () => {
    const held = await token();
    const suspended = await cli(['agents', 'suspend', 'demo-agent', '--reason', `INC-${RUN}: looping`], { env: admin });
    expect(suspended.code, suspended.stderr).toBe(0);
    expect(suspended.stdout).toMatch(
      /^suspended demo-agent: its \/token requests are refused and its tokens inactive until resume$/m,
    );
    expect(suspended.stdout).toMatch(/^state: +SUSPENDED/m);

    const shown = await cli(['agents', 'show', 'demo-agent'], { env: auditor });
    expect(shown.stdout).toMatch(new RegExp(`^last change: +suspend by demo-admin .*: INC-${RUN}: looping$`, 'm'));
    expect(JSON.parse((await cli(['agents', 'show', 'demo-agent', '--json'], { env: auditor })).stdout)).toMatchObject({
      agent: 'demo-agent',
      suspended: true,
      last_change: { action: 'suspend', by: 'demo-admin' },
    });
    expect((await cli(['agents', 'list'], { env: auditor })).stdout).toMatch(/^demo-agent +SUSPENDED /m);
    expectFailure(await cli(TOKEN, { env: agentEnv }), 1, /\(403 access_denied: the agent is suspended\)/);
    expect((await cli(['tokens', 'check', held], { env: agentEnv })).code).toBe(1);

    const resumed = await cli(['agents', 'resume', 'demo-agent', '--reason', 'fixed in v2.3'], { env: admin });
    expect(resumed.stdout).toMatch(/^resumed demo-agent: it may request tokens again/);
    expect((await cli(['tokens', 'check', held], { env: agentEnv })).code).toBe(0);

    // Revoke kills what the agent holds (issued before now, to the second) and lets it get new tokens.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const before = await token();
    const revoked = await cli(['agents', 'revoke', 'demo-agent', '--reason', 'rotate after incident'], { env: admin });
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/^revoked every token demo-agent held; it may get new ones$/m);
    expect(revoked.stdout).toMatch(/^revoked before: +\S+Z: tokens issued before are dead$/m);
    expect((await cli(['tokens', 'check', before], { env: agentEnv })).code).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const after = await token();
    expect(claims(after).sub).toBe('demo-agent');
    expect((await cli(['tokens', 'check', after], { env: agentEnv })).code).toBe(0);

    // Revoke with --suspend: the tokens dead and no new one, in one step.
    const contained = await cli(['agents', 'revoke', 'demo-agent', '--suspend', '--reason', `INC-${RUN}: key leaked`], {
      env: admin,
    });
    expect(contained.code, contained.stderr).toBe(0);
    expect(contained.stdout).toMatch(
      /^revoked every token demo-agent held and suspended it: no new token until resume$/m,
    );
    expect(contained.stdout).toMatch(/^state: +SUSPENDED/m);
    expect((await cli(['tokens', 'check', after], { env: agentEnv })).code).toBe(1);
    expectFailure(await cli(TOKEN, { env: agentEnv }), 1, /\(403 access_denied: the agent is suspended\)/);
  });
});
