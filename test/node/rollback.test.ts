/**
 * Rollback paths in the policy compiler: a grant that needs approval says what undoes it (`@rollback`, a
 * runbook; `@rollback_action`, the action that reverses it) or why nothing does (`@no_rollback`), and the
 * bundle carries it to the approvers; `npm run policy:check` refuses the grant that says neither.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compilePolicies } from '../../scripts/policy/compile';
import { PolicyError } from '../../scripts/policy/source';
import { Fixture } from './fixture';

const GRANT = 'disable-user-after-approval';
const RUNBOOK = '@rollback("https://runbooks.tessera-fixture.dev/iam/enable-user")';

let fixture: Fixture;
beforeEach(async () => {
  fixture = await Fixture.create();
});
afterEach(async () => {
  await fixture.remove();
});

async function problemsOf(): Promise<PolicyError['problems']> {
  const error = await compilePolicies(fixture.path('policies')).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof PolicyError)) throw new Error(`expected a PolicyError, got ${String(error)}`);
  return error.problems;
}

const grantLine = () => fixture.lineOf('policies/grants.cedar', GRANT);

describe('npm run policy:build: rollback paths', () => {
  it('carries a runbook into the bundle', async () => {
    const bundle = await compilePolicies(fixture.path('policies'));
    expect(bundle.cedar.grants[GRANT]?.rollback).toEqual({
      runbook: 'https://runbooks.tessera-fixture.dev/iam/enable-user',
    });
  });

  it('carries a reverse action, with or without a runbook, and a reason why none exists', async () => {
    const cases = [
      { annotations: '@rollback_action("iam:read-user")', rollback: { action: 'iam:read-user' } },
      {
        annotations: `${RUNBOOK}\n@rollback_action("iam:read-user")`,
        rollback: { runbook: 'https://runbooks.tessera-fixture.dev/iam/enable-user', action: 'iam:read-user' },
      },
      {
        annotations: '@no_rollback("  a disabled account is re-enabled by the IdP team only  ")',
        rollback: { none: 'a disabled account is re-enabled by the IdP team only' },
      },
    ];
    let current = RUNBOOK;
    for (const { annotations, rollback } of cases) {
      await fixture.replace('policies/grants.cedar', current, annotations);
      current = annotations;
      const bundle = await compilePolicies(fixture.path('policies'));
      expect(bundle.cedar.grants[GRANT]?.rollback, annotations).toEqual(rollback);
    }
  });

  it('refuses a grant with @approvals that declares no rollback path, with file, line and fix', async () => {
    await fixture.replace('policies/grants.cedar', `${RUNBOOK}\n`, '');
    expect(await problemsOf()).toEqual([
      {
        code: 'rollback-missing',
        file: expect.stringMatching(/policies\/grants\.cedar$/),
        line: await grantLine(),
        message: `grant ${GRANT} needs approval but declares no rollback path`,
        fix: expect.stringContaining('@no_rollback("<why nothing can>")'),
      },
    ]);
  });

  it('refuses a grant that needs context.approved without @approvals and declares no rollback path', async () => {
    await fixture.replace('policies/grants.cedar', `@approvals("2")\n@approver_group("security")\n${RUNBOOK}\n`, '');
    expect((await problemsOf()).map(({ code, line }) => ({ code, line }))).toEqual([
      { code: 'rollback-missing', line: await grantLine() },
    ]);
  });

  const refused = {
    'a runbook that is not an https URL': '@rollback("http://runbooks.tessera-fixture.dev/enable")',
    'a runbook that is not a URL': '@rollback("see the wiki")',
    'a reverse action the schema does not declare': '@rollback_action("iam:enable-user")',
    'no rollback beside a runbook': `${RUNBOOK}\n@no_rollback("none")`,
    'no rollback without a reason': '@no_rollback("  ")',
  };
  for (const [name, annotations] of Object.entries(refused)) {
    it(`refuses ${name}`, async () => {
      await fixture.replace('policies/grants.cedar', RUNBOOK, annotations);
      expect((await problemsOf()).map(({ code, line }) => ({ code, line }))).toEqual([
        { code: 'cedar-annotation', line: await grantLine() },
      ]);
    });
  }

  it('refuses a rollback path on a grant that needs no approval, which no approver would see', async () => {
    await fixture.replace('policies/grants.cedar', '@id("release-notes")', `@id("release-notes")\n${RUNBOOK}`);
    const problems = await problemsOf();
    expect(problems.map(({ code, line }) => ({ code, line }))).toEqual([
      { code: 'cedar-annotation', line: await fixture.lineOf('policies/grants.cedar', 'release-notes') },
    ]);
    expect(problems[0]?.message).toBe(
      '@rollback, @rollback_action and @no_rollback only apply to grants that need approval',
    );
  });
});
