/**
 * Deploy checks that need the compiled policy: who can sign in as admin or approve, grants that name
 * agents or APIs that will not exist, and the policy tests, with those that name agents the deploy must
 * remove or that the policy lacks.
 */
import { join, relative } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { PolicyBundle } from '../../worker/policy/bundle';
import type { PolicySources } from '../policy/compile';
import { runPolicyTests, type TestOutcome } from '../policy/tests';
import type { DemoUse } from './check-policy';
import { emailHostKind, urlHostKind } from './hosts';
import { type DeployProblem, error, warning } from './problems';

/** `policies/grants.cedar:12` as file and line. */
function sourceOf(source: string): { file: string; line: number } {
  const colon = source.lastIndexOf(':');
  return { file: source.slice(0, colon), line: Number(source.slice(colon + 1)) || 1 };
}

/** Who can sign in, once the demo's credentials and example Access rules are gone. */
interface Signer {
  role: string;
  groups: readonly string[];
  /** How many people: one per credential or exact email, unbounded for a glob such as `*@acme.com`. */
  people: number;
}

function signers(bundle: PolicyBundle, demoUse: DemoUse): Signer[] {
  const credentials = Object.values(bundle.admins.credentials)
    .filter((credential) => !demoUse.credentials.has(credential.id))
    .map((credential) => ({ role: credential.role, groups: credential.groups, people: 1 }));
  const access = bundle.admins.access;
  if (access === undefined || demoUse.access) return credentials;
  const rules = access.roles
    .filter((rule) => emailHostKind(rule.match) !== 'example')
    .map((rule) => ({ role: rule.role, groups: rule.groups, people: rule.match.includes('*') ? Infinity : 1 }));
  return [...credentials, ...rules];
}

function checkAdmins(bundle: PolicyBundle, sources: PolicySources, demoUse: DemoUse): DeployProblem[] {
  const people = signers(bundle, demoUse);
  const problems: DeployProblem[] = [];
  const file = sources.credentials?.file;
  const where = { file: file?.path ?? 'policies/admins.yaml', line: file?.lineOf(['credentials']) ?? 1 };
  const newCredential =
    'add a credential (`npm run cli -- admin-credential --id NAME`, role admin) or a Cloudflare Access rule';
  if (people.length === 0) {
    problems.push(
      error(
        'no-admin',
        where,
        'no admin can sign in at all (demo and example entries do not count): nobody could engage the kill switch, revoke, suspend or approve',
        newCredential,
      ),
    );
  } else if (!people.some((person) => person.role === 'admin')) {
    problems.push(
      error(
        'no-admin',
        where,
        'nobody has the admin role (demo and example entries do not count): nobody could engage the kill switch, revoke or suspend',
        newCredential,
      ),
    );
  }
  for (const [id, grant] of Object.entries(bundle.cedar.grants)) {
    if (grant.approval === undefined) continue;
    const { count, group } = grant.approval;
    const approvers = people
      .filter((person) => person.role === 'approver' && (group === undefined || person.groups.includes(group)))
      .reduce((sum, person) => sum + person.people, 0);
    if (approvers >= count) continue;
    const who = `${count === 1 ? 'approver' : 'approvers'}${group === undefined ? '' : ` in group ${group}`}`;
    problems.push(
      error(
        'approval-unreachable',
        sourceOf(grant.source),
        `grant ${id} needs ${count} ${who}; admins.yaml has ${approvers} (demo and example entries do not count): its requests would wait until they expire`,
        `add approvers (role approver${group === undefined ? '' : `, groups: [${group}]`}) to admins.yaml, as credentials or Access rules, or change the grant`,
      ),
    );
  }
  const settings = sources.settings;
  if (settings !== undefined && bundle.settings.approvals.webhook === undefined) {
    const needing = Object.entries(bundle.cedar.grants).filter(([, grant]) => grant.approval !== undefined);
    if (needing.length > 0) {
      problems.push(
        warning(
          'approvals-without-webhook',
          { file: settings.path, line: settings.lineOf(['approvals']) },
          `grants ${needing.map(([id]) => id).join(', ')} need approval, and no approvals.webhook tells approvers`,
          'set approvals.webhook, or make sure approvers poll (`npm run cli -- approvals`)',
        ),
      );
    }
  }
  return problems;
}

interface EntityRef {
  type: string;
  id: string;
}

/** Every entity literal (`Agent::"x"`, `Api::"https://..."`) in a policy's JSON form. */
function entityRefs(node: unknown, into: EntityRef[] = []): EntityRef[] {
  if (Array.isArray(node)) {
    for (const child of node) entityRefs(child, into);
  } else if (typeof node === 'object' && node !== null) {
    const { type, id } = node as Partial<EntityRef>;
    if (typeof type === 'string' && typeof id === 'string') into.push({ type, id });
    for (const child of Object.values(node)) entityRefs(child, into);
  }
  return into;
}

const isType = (ref: EntityRef, name: string) => ref.type === name || ref.type.endsWith(`::${name}`);

/** Groups items by `key`, in the order keys are first seen. */
function groupBy<T>(items: readonly T[], key: (item: T) => string): T[][] {
  const groups = new Map<string, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return [...groups.values()];
}

function checkGrants(bundle: PolicyBundle, sources: PolicySources, demoUse: DemoUse): DeployProblem[] {
  const problems: DeployProblem[] = [];
  const exampleGrants: { where: { file: string; line: number }; apis: string[] }[] = [];
  for (const [id, text] of Object.entries(bundle.cedar.policies)) {
    const json = cedar.policyToJson(text);
    const grant = bundle.cedar.grants[id];
    if (json.type === 'failure' || grant === undefined) continue;
    const refs = entityRefs(json.json);
    const agents = refs.filter((ref) => isType(ref, 'Agent')).map((ref) => ref.id);
    const named = [
      ...agents.filter((agent) => bundle.agents[agent] === undefined).map((agent) => `${agent} (not in agents.yaml)`),
      ...agents.filter((agent) => demoUse.agents.has(agent)).map((agent) => `${agent} (a demo agent)`),
    ];
    if (named.length > 0) {
      problems.push(
        warning(
          'grant-unknown-agent',
          sourceOf(grant.source),
          `grant ${id} names ${named.join(', ')}: it will grant nothing`,
          'name your own agents, or remove the grant',
        ),
      );
    }
    const apis = refs.filter((ref) => isType(ref, 'Api') && urlHostKind(ref.id) === 'example').map((ref) => ref.id);
    if (apis.length > 0) exampleGrants.push({ where: sourceOf(grant.source), apis });
  }
  // One warning per file: example grants come and go together.
  for (const group of groupBy(exampleGrants, (grant) => grant.where.file)) {
    const [first] = group;
    if (first === undefined) continue;
    const apis = [...new Set(group.flatMap((grant) => grant.apis))];
    const lines = `line${group.length === 1 ? '' : 's'} ${group.map((grant) => grant.where.line).join(', ')}`;
    problems.push(
      warning(
        'example-audience',
        first.where,
        `${group.length === 1 ? 'a grant' : `${group.length} grants`} (${lines}) for example APIs: ${apis.join(', ')}`,
        "grant your APIs' audiences, and remove the example grants",
      ),
    );
  }
  const settings = sources.settings;
  const examples = bundle.settings.dpop.requiredAudiences.filter((audience) => urlHostKind(audience) === 'example');
  if (settings !== undefined && examples.length > 0) {
    problems.push(
      warning(
        'example-audience',
        { file: settings.path, line: settings.lineOf(['dpop', 'required_audiences']) },
        `dpop.required_audiences lists ${examples.join(', ')}, an example API`,
        "list your APIs' audiences, or none",
      ),
    );
  }
  return problems;
}

/** "a policy test (line 4) names" or "3 policy tests (lines 4, 12, 19) name". */
function testsAt(tests: readonly TestOutcome[]): string {
  const lines = tests.map((test) => test.line).join(', ');
  return tests.length === 1
    ? `a policy test (line ${lines}) names`
    : `${tests.length} policy tests (lines ${lines}) name`;
}

async function checkTests(policyDir: string, bundle: PolicyBundle, demoUse: DemoUse): Promise<DeployProblem[]> {
  const testsDir = join(policyDir, 'tests');
  const { outcomes, problems: fileProblems } = await runPolicyTests(testsDir, bundle);
  const problems: DeployProblem[] = fileProblems.map((problem) =>
    error(
      problem.code,
      problem,
      problem.message,
      problem.fix ?? 'correct the test file (docs/policy-and-agents.md, "A policy test")',
    ),
  );
  if (outcomes.length === 0 && fileProblems.length === 0) {
    problems.push(
      warning(
        'policy-tests-missing',
        { file: relative(process.cwd(), testsDir), line: 1 },
        'no policy tests: nothing shows the grants decide what you meant (and `npm test` requires some)',
        'add tests for your agents in policies/tests/*.yaml',
      ),
    );
  }
  // Tests that name a missing or a demo agent are grouped by file and agent: they go, or move, together.
  const byAgent: { kind: 'missing' | 'demo'; test: TestOutcome }[] = [];
  for (const test of outcomes) {
    const where = { file: test.file, line: test.line };
    if (test.failure?.kind === 'unknown-agent') {
      byAgent.push({ kind: 'missing', test });
    } else if (test.failure?.kind === 'unknown-action') {
      problems.push(
        error(
          'policy-test-unknown-action',
          where,
          `policy test "${test.name}": ${test.failure.message}`,
          'declare the action in schema.cedarschema, or correct the test',
        ),
      );
    } else if (demoUse.agents.has(test.agent)) {
      byAgent.push({ kind: 'demo', test });
    } else if (test.failure !== undefined) {
      problems.push(
        error(
          'policy-test-failed',
          where,
          `policy test "${test.name}" fails: ${test.failure.message}`,
          'fix the grant or the test (`npm run policy:check`)',
        ),
      );
    }
  }
  for (const group of groupBy(byAgent, ({ kind, test }) => `${kind}\u0000${test.file}\u0000${test.agent}`)) {
    const [first] = group;
    if (first === undefined) continue;
    const { kind, test } = first;
    const tests = group.map((entry) => entry.test);
    problems.push(
      kind === 'missing'
        ? error(
            'policy-test-unknown-agent',
            test,
            `${testsAt(tests)} agent ${test.agent}, which agents.yaml does not declare`,
            'point the tests at your own agents, or remove them',
          )
        : error(
            'policy-test-demo-agent',
            test,
            `${testsAt(tests)} demo agent ${test.agent}, which the deploy must remove (and then the tests fail)`,
            'point the tests at your own agents, or remove them',
          ),
    );
  }
  return problems;
}

/** Runs the checks that need the compiled policy. */
export async function checkBundle(
  policyDir: string,
  bundle: PolicyBundle,
  sources: PolicySources,
  demoUse: DemoUse,
): Promise<DeployProblem[]> {
  return [
    ...checkAdmins(bundle, sources, demoUse),
    ...checkGrants(bundle, sources, demoUse),
    ...(await checkTests(policyDir, bundle, demoUse)),
  ];
}
