import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkDeploy } from '../../scripts/deploy/check';
import type { DeployProblemCode } from '../../scripts/deploy/problems';
import { utcDay } from '../../worker/core/lifecycle';
import { codes, demoMaterial, Fixture, PROJECT_ROOT } from './fixture';

let fixture: Fixture;
beforeEach(async () => {
  fixture = await Fixture.create();
});
afterEach(async () => {
  await fixture.remove();
});

interface Breakage {
  name: string;
  /** What the deploy check must report for it. */
  codes: DeployProblemCode[];
  apply(f: Fixture): Promise<void>;
}

const agent = (id: string, attestation: string, extra = '') => `
  - id: ${id}
    owner: ops@tessera-fixture.dev${extra}
    review_by: ${utcDay(Date.now() + 90 * 86_400_000)}
    attestation: ${attestation}
`;
const issuer = (id: string, url: string, jwksUri: string) => `
  - id: ${id}
    issuer: ${url}
    jwks_uri: ${jwksUri}
    algorithms: [RS256]
`;
const test = (name: string, agentId: string, actions: string, expect: string) => `
  - name: ${name}
    agent: ${agentId}
    audience: https://tickets.tessera-fixture.dev
    actions: [${actions}]
    expect: ${expect}
`;

/** Everything a deploy must not ship while the policy still compiles, each in its own way. */
const deployBreakages: Breakage[] = [
  {
    name: 'a demo agent',
    codes: ['demo-agent'],
    apply: async (f) =>
      f.append(
        'policies/agents.yaml',
        agent('demo-agent', `{ self_signed: { keys: [${(await demoMaterial()).publicJwk}] } }`, '\n    demo: true'),
      ),
  },
  {
    name: 'the demo key under an agent that no longer says demo: true',
    codes: ['demo-agent-key'],
    apply: async (f) =>
      f.append(
        'policies/agents.yaml',
        agent('copycat', `{ self_signed: { keys: [${(await demoMaterial()).publicJwk}] } }`),
      ),
  },
  {
    name: 'a demo admin credential',
    codes: ['demo-admin'],
    apply: (f) =>
      f.replace(
        'policies/admins.yaml',
        'credentials:\n',
        `credentials:\n  - { id: demo-admin, role: admin, secret_sha256: ${'ab'.repeat(32)}, demo: true }\n`,
      ),
  },
  {
    name: 'a demo credential secret under another id',
    codes: ['demo-admin-secret'],
    apply: async (f) =>
      f.replace(
        'policies/admins.yaml',
        'credentials:\n',
        `credentials:\n  - { id: renamed, role: auditor, secret_sha256: ${(await demoMaterial()).credentialHash} }\n`,
      ),
  },
  {
    name: "a demo API's introspection credential",
    codes: ['demo-api'],
    apply: (f) =>
      f.append(
        'policies/apis.yaml',
        `  - { audience: https://graph.tessera-fixture.dev, introspection_secret_sha256: ${'cd'.repeat(32)}, demo: true }\n`,
      ),
  },
  {
    name: 'a demo introspection secret under an entry that no longer says demo: true',
    codes: ['demo-api-secret'],
    apply: async (f) =>
      f.replace(
        'policies/apis.yaml',
        /introspection_secret_sha256: [0-9a-f]{64}/,
        `introspection_secret_sha256: ${(await demoMaterial()).introspectionHash}`,
      ),
  },
  {
    name: "the demo's Cloudflare Access team",
    codes: ['demo-access'],
    apply: (f) =>
      f.replace('policies/admins.yaml', 'tessera-fixture.cloudflareaccess.com', 'acme.cloudflareaccess.com'),
  },
  {
    name: 'an Access rule for example addresses',
    codes: ['example-access-role'],
    apply: (f) => f.append('policies/admins.yaml', '    - { match: "*@example.org", role: auditor }\n'),
  },
  {
    name: 'an agent owned by an example address',
    codes: ['example-owner'],
    apply: (f) => f.replace('policies/agents.yaml', 'bob@tessera-fixture.dev', 'bob@example.com'),
  },
  {
    name: 'an example issuer',
    codes: ['example-issuer'],
    apply: async (f) => {
      await f.append(
        'policies/issuers.yaml',
        issuer('k8s', 'https://k8s.acme.example', 'https://k8s.acme.example/keys'),
      );
      await f.append('policies/agents.yaml', agent('indexer', '{ issuer: k8s, subject: "system:serviceaccount:x" }'));
    },
  },
  {
    name: 'an issuer whose keys are on a private address',
    codes: ['issuer-jwks-private'],
    apply: async (f) => {
      await f.append('policies/issuers.yaml', issuer('internal', 'https://idp.corp', 'https://10.0.0.5/jwks'));
      await f.append('policies/agents.yaml', agent('worker', '{ issuer: internal, subject: worker }'));
    },
  },
  {
    name: 'an issuer no agent binds to',
    codes: ['unused-issuer'],
    apply: (f) =>
      f.append(
        'policies/issuers.yaml',
        issuer('gitlab', 'https://gitlab.com', 'https://gitlab.com/oauth/discovery/keys'),
      ),
  },
  {
    name: 'an approval webhook over http to a private address',
    codes: ['webhook-not-https', 'webhook-not-public'],
    apply: (f) =>
      f.replace('policies/tessera.yaml', 'https://hooks.tessera-fixture.dev/tessera/approvals', 'http://10.0.0.7/hook'),
  },
  {
    name: 'the webhook secret not set on the Worker',
    codes: ['missing-secret'],
    apply: async (f) => {
      f.secrets = { status: 'listed', names: ['SIGNING_KEY'] };
    },
  },
  {
    name: 'a grant that needs more approvers than admins.yaml has',
    codes: ['approval-unreachable'],
    apply: (f) => f.replace('policies/grants.cedar', '@approvals("2")', '@approvals("5")'),
  },
  {
    name: 'a grant naming an agent the policy lacks',
    codes: ['grant-unknown-agent'],
    apply: (f) =>
      f.append(
        'policies/grants.cedar',
        '\n@id("ghost")\npermit (principal == Agent::"ghost-bot", action == Action::"tickets:read", resource);\n',
      ),
  },
  {
    name: 'a grant for an example API',
    codes: ['example-audience'],
    apply: (f) =>
      f.append(
        'policies/grants.cedar',
        '\n@id("example")\npermit (principal, action == Action::"graph:read", resource == Api::"https://graph.example.net");\n',
      ),
  },
  {
    name: 'a policy test naming an agent the policy lacks',
    codes: ['policy-test-unknown-agent'],
    apply: (f) => f.append('policies/tests/grants.yaml', test('ghost reads', 'ghost-bot', 'tickets:read', 'allow')),
  },
  {
    name: 'a policy test expecting an action no schema declares',
    codes: ['policy-test-unknown-action'],
    apply: (f) => f.append('policies/tests/grants.yaml', test('flying tickets', 'triage-bot', 'tickets:fly', 'allow')),
  },
  {
    name: 'a policy test naming the demo agent',
    codes: ['policy-test-demo-agent'],
    apply: (f) => f.append('policies/tests/grants.yaml', test('demo reads', 'demo-agent', 'tickets:read', 'deny')),
  },
  {
    name: 'a failing policy test',
    codes: ['policy-test-failed'],
    apply: (f) => f.replace('policies/tests/grants.yaml', 'ttl: 600', 'ttl: 500'),
  },
  {
    name: 'an ISSUER no route serves',
    codes: ['issuer-not-routed'],
    apply: (f) => f.replace('wrangler.toml', /^routes = .*\n/m, ''),
  },
  {
    name: 'the broker also on workers.dev',
    codes: ['workers-dev-exposed'],
    apply: (f) => f.replace('wrangler.toml', 'workers_dev = false\n', ''),
  },
  {
    name: 'the placeholder D1 database id',
    codes: ['d1-placeholder-id'],
    apply: (f) =>
      f.replace('wrangler.toml', /database_id = ".*"/, 'database_id = "00000000-0000-0000-0000-000000000000"'),
  },
  {
    name: 'a Durable Object class no migration creates',
    codes: ['do-class-without-migration'],
    apply: (f) =>
      f.append('wrangler.toml', '\n[[durable_objects.bindings]]\nname = "AUDIT_SEALER"\nclass_name = "AuditSealer"\n'),
  },
  {
    name: 'a migration tag used twice',
    codes: ['migration-duplicate-tag'],
    apply: (f) => f.append('wrangler.toml', '\n[[migrations]]\ntag = "v2"\nnew_sqlite_classes = ["Spare"]\n'),
  },
  {
    name: 'a secret in [vars]',
    codes: ['secret-in-vars'],
    apply: (f) => f.replace('wrangler.toml', '[vars]\n', '[vars]\nAPPROVAL_WEBHOOK_SECRET = "hunter2"\n'),
  },
  {
    name: 'the billing meter on in [vars]',
    codes: ['billing-meter-on'],
    apply: (f) => f.replace('wrangler.toml', '[vars]\n', '[vars]\nBILLING_METER = "on"\n'),
  },
  {
    name: 'Workers Logs off',
    codes: ['no-observability'],
    apply: (f) => f.replace('wrangler.toml', '[observability]\nenabled = true\n', ''),
  },
  {
    name: 'an [env] section',
    codes: ['wrangler-env-unchecked'],
    apply: (f) => f.append('wrangler.toml', '\n[env.staging]\nname = "tessera-staging"\n'),
  },
  {
    name: 'a generated bundle that is not the build of the policy',
    codes: ['bundle-stale'],
    apply: async (f) => {
      f.bundlePath = f.path('no-bundle-here.json');
    },
  },
];

describe('npm run deploy:check', () => {
  it('passes a clean configuration, and hands back its bundle', async () => {
    const report = await fixture.check();
    expect(report.problems).toEqual([]);
    expect(report.bundle?.agents['triage-bot']).toBeDefined();
  });

  it('reports every deploy problem of one configuration in one run', async () => {
    for (const breakage of deployBreakages) await breakage.apply(fixture);
    const report = await fixture.check();
    expect(codes(report)).toEqual([...new Set(deployBreakages.flatMap((breakage) => breakage.codes))].sort());
    expect(report.bundle).toBeUndefined();
    for (const problem of report.problems) {
      expect(problem.fix, problem.code).not.toBe('');
      expect(problem.line, problem.code).toBeGreaterThan(0);
    }
  });

  it('tells errors, which stop the deploy, from warnings, which do not', async () => {
    await fixture.replace('wrangler.toml', 'workers_dev = false\n', '');
    const warned = await fixture.check();
    expect(warned.problems.map((problem) => [problem.code, problem.severity])).toEqual([
      ['workers-dev-exposed', 'warning'],
    ]);
    expect(warned.bundle).toBeDefined();

    await fixture.replace(
      'wrangler.toml',
      /database_id = ".*"/,
      'database_id = "00000000-0000-0000-0000-000000000000"',
    );
    const failed = await fixture.check();
    expect(failed.problems.find((problem) => problem.code === 'd1-placeholder-id')?.severity).toBe('error');
    expect(failed.bundle).toBeUndefined();
  });

  it('names the file and line of each problem', async () => {
    await fixture.replace('wrangler.toml', 'https://tessera.tessera-fixture.dev"', 'http://localhost:8787"');
    await fixture.replace(
      'wrangler.toml',
      /database_id = ".*"/,
      'database_id = "00000000-0000-0000-0000-000000000000"',
    );
    await fixture.replace('policies/agents.yaml', 'bob@tessera-fixture.dev', 'bob@example.com');
    const { problems } = await fixture.check();
    const at = (code: DeployProblemCode) => {
      const problem = problems.find((candidate) => candidate.code === code);
      return problem && { file: problem.file.split('/').slice(-2).join('/'), line: problem.line };
    };
    const dir = fixture.dir.split('/').at(-1);
    expect(at('issuer-not-https')).toEqual({
      file: `${dir}/wrangler.toml`,
      line: await fixture.lineOf('wrangler.toml', 'ISSUER'),
    });
    expect(at('d1-placeholder-id')).toEqual({
      file: `${dir}/wrangler.toml`,
      line: await fixture.lineOf('wrangler.toml', 'database_id'),
    });
    expect(at('example-owner')).toEqual({
      file: 'policies/agents.yaml',
      line: await fixture.lineOf('policies/agents.yaml', 'bob@example.com'),
    });
  });

  describe('ISSUER', () => {
    const cases: { issuer: string | undefined; codes: DeployProblemCode[] }[] = [
      { issuer: 'http://localhost:8787', codes: ['issuer-not-https', 'issuer-not-public'] },
      { issuer: 'https://127.0.0.1', codes: ['issuer-not-public'] },
      { issuer: 'https://[::1]:8787', codes: ['issuer-not-public'] },
      { issuer: 'https://192.168.1.10', codes: ['issuer-not-public'] },
      { issuer: 'https://tessera.internal', codes: ['issuer-not-public'] },
      { issuer: 'https://tessera.example.com', codes: ['issuer-example'] },
      { issuer: 'https://tessera.tessera-fixture.dev/', codes: ['issuer-invalid'] },
      { issuer: 'https://tessera.tessera-fixture.dev/broker', codes: ['issuer-invalid'] },
      { issuer: 'tessera.tessera-fixture.dev', codes: ['issuer-invalid'] },
      { issuer: undefined, codes: ['issuer-missing'] },
    ];
    for (const { issuer: value, codes: expected } of cases) {
      it(`reports ${expected.join(' and ')} for ${value ?? 'no ISSUER'}`, async () => {
        const line = value === undefined ? '' : `ISSUER = "${value}"`;
        await fixture.replace('wrangler.toml', 'ISSUER = "https://tessera.tessera-fixture.dev"', line);
        expect(codes(await fixture.check())).toEqual(expected);
      });
    }

    it('accepts a workers.dev ISSUER for this Worker without a route', async () => {
      await fixture.replace('wrangler.toml', /^routes = .*\n/m, '');
      await fixture.replace('wrangler.toml', 'workers_dev = false\n', '');
      await fixture.replace(
        'wrangler.toml',
        'https://tessera.tessera-fixture.dev"',
        'https://tessera.acme.workers.dev"',
      );
      expect(codes(await fixture.check())).toEqual([]);
    });
  });

  describe('the approval webhook and its secret', () => {
    it('reports an example webhook', async () => {
      await fixture.replace('policies/tessera.yaml', 'hooks.tessera-fixture.dev', 'hooks.example.com');
      expect(codes(await fixture.check())).toEqual(['example-webhook']);
    });

    it('warns, and says how to check, when the secrets cannot be listed', async () => {
      fixture.secrets = { status: 'unavailable', reason: 'not logged in' };
      const report = await fixture.check();
      expect(report.problems.map((problem) => [problem.code, problem.severity])).toEqual([
        ['secrets-unchecked', 'warning'],
      ]);
      expect(report.problems[0]?.fix).toContain('wrangler secret list');
      expect(report.bundle).toBeDefined();
    });

    it('reports the secret missing when the Worker was never deployed', async () => {
      fixture.secrets = { status: 'no-worker' };
      expect(codes(await fixture.check())).toEqual(['missing-secret']);
    });

    it('needs no secret, but warns, when approvals have no webhook', async () => {
      await fixture.replace('policies/tessera.yaml', /^ {2}webhook: .*\n/m, '');
      fixture.secrets = { status: 'listed', names: [] };
      expect(codes(await fixture.check())).toEqual(['approvals-without-webhook']);
    });
  });

  describe('admins', () => {
    it('accepts an empty credentials: when Cloudflare Access signs admins in', async () => {
      await fixture.replace('policies/admins.yaml', /^credentials:\n(?: {2}- .*\n)+/m, 'credentials:\n');
      await fixture.append(
        'policies/admins.yaml',
        '    - { match: frank@tessera-fixture.dev, role: admin }\n    - { match: erin@tessera-fixture.dev, role: approver, groups: [security] }\n',
      );
      // Rules match in order: the auditor glob must come after the named people.
      await fixture.replace('policies/admins.yaml', '    - { match: "*@tessera-fixture.dev", role: auditor }\n', '');
      await fixture.append('policies/admins.yaml', '    - { match: "*@tessera-fixture.dev", role: auditor }\n');
      expect(codes(await fixture.check())).toEqual([]);
    });

    it('says plainly that no admin can sign in when every credential and Access are gone', async () => {
      await fixture.replace('policies/admins.yaml', /^credentials:\n(?: {2}- .*\n)+/m, 'credentials:\n');
      await fixture.replace('policies/admins.yaml', /^cloudflare_access:[\s\S]*/m, 'cloudflare_access:\n');
      expect(codes(await fixture.check())).toEqual(['approval-unreachable', 'no-admin']);
    });
  });

  it('warns about an empty agent inventory, and what still names the agents', async () => {
    await fixture.replace('policies/agents.yaml', /^agents:[\s\S]*/m, 'agents:\n');
    expect(codes(await fixture.check())).toEqual([
      'grant-unknown-agent',
      'no-agents',
      'policy-test-unknown-agent',
      'unused-issuer',
    ]);
  });

  it('warns when there are no policy tests', async () => {
    await fixture.replace('policies/tests/grants.yaml', /^tests:[\s\S]*/m, 'tests:\n');
    expect(codes(await fixture.check())).toEqual(['policy-tests-missing']);
  });

  it('reports a wrangler.toml that is not TOML, and still checks the policy', async () => {
    await fixture.append('wrangler.toml', '\n[vars\n');
    await fixture.replace('policies/tessera.yaml', 'hooks.tessera-fixture.dev', 'hooks.example.com');
    expect(codes(await fixture.check())).toEqual(['example-webhook', 'wrangler-config-invalid']);
  });

  it('reports every policy problem together with the demo entries, and what it could not check', async () => {
    const { publicJwk } = await demoMaterial();
    await fixture.append('policies/tessera.yaml', 'approvals: [unclosed\n');
    await fixture.append(
      'policies/agents.yaml',
      [
        agent('Bad_Id', '{ issuer: github-actions, subject: x }'),
        agent('triage-bot', '{ issuer: github-actions, subject: y }'),
        agent('no-alg', '{ self_signed: { keys: [{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"k1"}] } }'),
        agent('lost', '{ issuer: nowhere, subject: z }'),
        agent('github-actions', '{ issuer: github-actions, subject: w }'),
        agent('demo-agent', `{ self_signed: { keys: [${publicJwk}] } }`, '\n    demo: true'),
      ].join(''),
    );
    await fixture.replace('policies/admins.yaml', 'role: admin', 'role: root');
    await fixture.replace('policies/grants.cedar', '@max_ttl("600")', '@max_ttl("9999")');
    await fixture.append(
      'policies/grants.cedar',
      '\n@id("typo")\npermit (principal, action == Action::"tickets:raed", resource);\n',
    );
    expect(codes(await fixture.check())).toEqual([
      'cedar-annotation',
      'cedar-invalid',
      'checks-skipped',
      'demo-agent',
      'duplicate',
      'id-collision',
      'invalid-key',
      'invalid-value',
      'unknown-issuer',
      'yaml-syntax',
    ]);
  });

  it("reports what a first deploy of this repository's demo configuration would ship", async () => {
    const report = await checkDeploy({
      policyDir: join(PROJECT_ROOT, 'policies'),
      wranglerConfig: join(PROJECT_ROOT, 'wrangler.toml'),
      demoDir: join(PROJECT_ROOT, 'scripts/demo'),
      secrets: async () => ({ status: 'unavailable', reason: 'offline' }),
    });
    expect(codes(report)).toEqual(
      expect.arrayContaining<DeployProblemCode>([
        'demo-agent',
        'demo-admin',
        'demo-api',
        'demo-access',
        'example-webhook',
        'example-issuer',
        'example-owner',
        'policy-test-demo-agent',
        'issuer-not-https',
        'issuer-not-public',
        'd1-placeholder-id',
        'secrets-unchecked',
      ]),
    );
  });
});
