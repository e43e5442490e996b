import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compilePolicies, compilePolicyFolder } from '../../scripts/policy/compile';
import { PolicyError } from '../../scripts/policy/source';
import { runPolicyTests } from '../../scripts/policy/tests';
import { demoMaterial, Fixture } from './fixture';

let fixture: Fixture;
beforeEach(async () => {
  fixture = await Fixture.create();
});
afterEach(async () => {
  await fixture.remove();
});

async function rejection(promise: Promise<unknown>): Promise<PolicyError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof PolicyError)) throw new Error(`expected a PolicyError, got ${String(error)}`);
  return error;
}

describe('npm run policy:build', () => {
  it('lists every problem of a policy folder, each with its file and line', async () => {
    await fixture.replace('policies/tessera.yaml', 'poll_interval: 5', 'poll_interval: 500');
    await fixture.replace('policies/agents.yaml', 'id: release-bot', 'id: Release_Bot');
    await fixture.replace('policies/admins.yaml', 'role: admin', 'role: root');
    await fixture.replace('policies/grants.cedar', '@max_ttl("600")', '@max_ttl("0")');
    const error = await rejection(compilePolicies(fixture.path('policies')));
    const found = error.problems.map((problem) => ({
      code: problem.code,
      file: problem.file.split('/').at(-1),
      line: problem.line,
    }));
    expect(found).toEqual(
      expect.arrayContaining([
        {
          code: 'invalid-value',
          file: 'tessera.yaml',
          line: await fixture.lineOf('policies/tessera.yaml', 'poll_interval'),
        },
        {
          code: 'invalid-value',
          file: 'agents.yaml',
          line: await fixture.lineOf('policies/agents.yaml', 'Release_Bot'),
        },
        {
          code: 'invalid-value',
          file: 'admins.yaml',
          line: await fixture.lineOf('policies/admins.yaml', 'role: root'),
        },
        {
          code: 'cedar-annotation',
          file: 'grants.cedar',
          line: await fixture.lineOf('policies/grants.cedar', 'triage-tickets'),
        },
      ]),
    );
    expect(error.problems).toHaveLength(4);
  });

  it('builds a demo agent and credential, and refuses both for deploy while still compiling the rest', async () => {
    const { publicJwk, credentialHash } = await demoMaterial();
    await fixture.append(
      'policies/agents.yaml',
      `\n  - id: demo-agent\n    owner: ops@tessera-fixture.dev\n    demo: true\n    attestation: { self_signed: { keys: [${publicJwk}] } }\n`,
    );
    await fixture.replace(
      'policies/admins.yaml',
      'credentials:\n',
      `credentials:\n  - { id: demo-admin, role: admin, secret_sha256: ${credentialHash}, demo: true }\n`,
    );
    const dir = fixture.path('policies');
    expect((await compilePolicies(dir)).agents['demo-agent']?.demo).toBe(true);
    const forDeploy = await compilePolicyFolder(dir, { forDeploy: true });
    expect(forDeploy.problems.map((problem) => problem.code)).toEqual(['demo-agent', 'demo-admin']);
    expect(forDeploy.bundle?.agents['triage-bot']).toBeDefined();
    await expect(compilePolicies(dir, { forDeploy: true })).rejects.toBeInstanceOf(PolicyError);
  });

  it('takes an emptied list as empty, not as a null to refuse', async () => {
    await fixture.replace('policies/admins.yaml', /^credentials:\n(?: {2}- .*\n)+/m, 'credentials:\n');
    await fixture.replace('policies/tessera.yaml', /^ {2}webhook: .*\n/m, '  webhook:\n');
    const bundle = await compilePolicies(fixture.path('policies'));
    expect(bundle.admins.credentials).toEqual({});
    expect(bundle.settings.approvals.webhook).toBeUndefined();
  });
});

describe('npm run policy:check', () => {
  it('reports every test that names an unknown agent or action, and runs the others', async () => {
    await fixture.replace('policies/agents.yaml', /^ {2}- id: release-bot[\s\S]*/m, '');
    await fixture.append(
      'policies/tests/grants.yaml',
      '\n  - name: flying\n    agent: triage-bot\n    audience: https://tickets.tessera-fixture.dev\n    actions: [tickets:fly]\n    expect: allow\n',
    );
    const bundle = await compilePolicies(fixture.path('policies'));
    const { outcomes, problems } = await runPolicyTests(join(fixture.path('policies'), 'tests'), bundle);
    expect(problems).toEqual([]);
    expect(outcomes.map((outcome) => [outcome.agent, outcome.failure?.kind])).toEqual([
      ['triage-bot', undefined],
      ['release-bot', 'unknown-agent'],
      ['triage-bot', undefined],
      ['triage-bot', 'unknown-action'],
    ]);
  });
});
