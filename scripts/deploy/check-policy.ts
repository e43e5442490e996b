/**
 * Deploy checks of `policies/` beyond what the compiler refuses: the demo's keys, admin and introspection credentials and Access
 * team under any name, configuration left from the examples, admins and approvers who cannot exist, and
 * webhooks a Worker cannot reach.
 */

import { utcDay } from '../../worker/core/lifecycle';
import type { PolicySources } from '../policy/compile';
import type { AccessEntry } from '../policy/schemas';
import type { SourceFile } from '../policy/source';
import { DEMO_ACCESS, type DemoSecrets, thumbprintOf } from './demo';
import { emailHostKind, urlHostKind } from './hosts';
import { type DeployProblem, error, warning } from './problems';

const at = (file: SourceFile<unknown>, path: readonly PropertyKey[]) => ({ file: file.path, line: file.lineOf(path) });

/** What the demo left in the policy, for the checks that follow (tests and grants that name demo agents). */
export interface DemoUse {
  /** Agents marked `demo: true` or registered with a demo key. */
  agents: ReadonlySet<string>;
  /** Credentials marked `demo: true` or whose secret is a demo secret. */
  credentials: ReadonlySet<string>;
  /** Whether `cloudflare_access` is the demo's team or application. */
  access: boolean;
}

/** Demo keys and credential secrets under entries that no longer say `demo: true` (the compiler refuses those). */
async function checkDemoSecrets(sources: PolicySources, demo: DemoSecrets, problems: DeployProblem[]) {
  const agents = new Set<string>();
  const credentials = new Set<string>();
  for (const { index, value: agent } of sources.agents?.entries ?? []) {
    if (agent.demo) agents.add(agent.id);
    if (!('self_signed' in agent.attestation) || sources.agents === undefined) continue;
    for (const [k, key] of agent.attestation.self_signed.keys.entries()) {
      const thumbprint = await thumbprintOf(key);
      if (thumbprint === undefined || !demo.keyThumbprints.has(thumbprint)) continue;
      agents.add(agent.id);
      if (agent.demo) continue;
      problems.push(
        error(
          'demo-agent-key',
          at(sources.agents.file, ['agents', index, 'attestation', 'self_signed', 'keys', k]),
          `agent ${agent.id} is registered with the demo key ${key.kid}, whose private half is in scripts/demo/`,
          'make the agent its own key pair (`npm run cli -- keygen --kid NAME`) and register the public key',
        ),
      );
    }
  }
  for (const { index, value: issuer } of sources.issuers?.entries ?? []) {
    for (const key of issuer.jwks?.keys ?? []) {
      const thumbprint = await thumbprintOf(key);
      if (thumbprint === undefined || !demo.keyThumbprints.has(thumbprint) || sources.issuers === undefined) continue;
      problems.push(
        error(
          'demo-agent-key',
          at(sources.issuers.file, ['issuers', index, 'jwks']),
          `issuer ${issuer.id} trusts the demo key ${key.kid}, whose private half is in scripts/demo/`,
          "replace the inline jwks with the issuer's own keys, or use its jwks_uri",
        ),
      );
    }
  }
  for (const { index, value: credential } of sources.credentials?.entries ?? []) {
    const demoSecret = demo.credentialHashes.has(credential.secret_sha256);
    if (credential.demo || demoSecret) credentials.add(credential.id);
    if (!demoSecret || credential.demo || sources.credentials === undefined) continue;
    problems.push(
      error(
        'demo-admin-secret',
        at(sources.credentials.file, ['credentials', index, 'secret_sha256']),
        `credential ${credential.id} has the secret of a demo credential, published in scripts/demo/admin-credentials.json`,
        'make a new one with `npm run cli -- admin-credential --id NAME` and replace this entry',
      ),
    );
  }
  for (const { index, value: api } of sources.apis?.entries ?? []) {
    if (!demo.introspectionHashes.has(api.introspection_secret_sha256) || api.demo || sources.apis === undefined)
      continue;
    problems.push(
      error(
        'demo-api-secret',
        at(sources.apis.file, ['apis', index, 'introspection_secret_sha256']),
        `the introspection credential of ${api.audience} has the secret of a demo credential, published in scripts/demo/introspection-credentials.json`,
        `make a new one with \`npm run cli -- introspection-credential --audience ${api.audience}\` and replace this entry`,
      ),
    );
  }
  return { agents, credentials };
}

function isDemoAccess(access: AccessEntry): boolean {
  return URL.parse(access.team_domain)?.hostname === DEMO_ACCESS.teamHost || access.audience === DEMO_ACCESS.audience;
}

function checkAccess(sources: PolicySources, problems: DeployProblem[]): boolean {
  if (sources.access === undefined) return false;
  const { file, value } = sources.access;
  const demo = isDemoAccess(value);
  if (demo) {
    problems.push(
      error(
        'demo-access',
        at(file, ['cloudflare_access']),
        `cloudflare_access is the demo's (team ${value.team_domain}, AUD ${value.audience.slice(0, 8)}…): the broker would trust another team's sign-ins`,
        "set team_domain to your team (https://<team>.cloudflareaccess.com) and audience to your Access application's AUD tag, or remove cloudflare_access",
      ),
    );
  }
  const examples = value.roles.filter((rule) => emailHostKind(rule.match) === 'example');
  const [first] = examples;
  if (first !== undefined) {
    problems.push(
      error(
        'example-access-role',
        at(file, ['cloudflare_access', 'roles', value.roles.indexOf(first)]),
        `Access rules ${examples.map((rule) => rule.match).join(', ')} are example addresses: they match nobody`,
        "replace them with your admins' addresses or domain",
      ),
    );
  }
  return demo;
}

function checkAgentsAndIssuers(sources: PolicySources, demoAgents: ReadonlySet<string>, problems: DeployProblem[]) {
  const agents = sources.agents;
  if (agents !== undefined && agents.entries.length === 0) {
    problems.push(
      warning(
        'no-agents',
        at(agents.file, ['agents']),
        'no agents are declared: the broker will refuse every /token request',
        'declare your agents (docs/policy-and-agents.md, "Declare an agent and its grants")',
      ),
    );
  }
  for (const { index, value: agent } of agents?.entries ?? []) {
    // A demo agent is reported as such, and must go whatever its owner.
    if (agents === undefined || demoAgents.has(agent.id) || emailHostKind(agent.owner) !== 'example') continue;
    problems.push(
      error(
        'example-owner',
        at(agents.file, ['agents', index, 'owner']),
        `agent ${agent.id} is owned by ${agent.owner}, an example address: this is an example agent, or its accountable human is missing`,
        'remove the example agent, or set owner to the person accountable for it',
      ),
    );
  }
  const bound = new Set(
    agents?.entries.flatMap(({ value }) => ('issuer' in value.attestation ? [value.attestation.issuer] : [])),
  );
  for (const { index, value: issuer } of sources.issuers?.entries ?? []) {
    const file = sources.issuers?.file;
    if (file === undefined) continue;
    const examples = [issuer.issuer, issuer.jwks_uri].filter((url) => url && urlHostKind(url) === 'example');
    if (examples.length > 0) {
      problems.push(
        error(
          'example-issuer',
          at(file, ['issuers', index]),
          `issuer ${issuer.id} is at ${examples.join(' and ')}, an example address: this is an example issuer`,
          'remove it, or point it at your real workload-identity issuer',
        ),
      );
    } else if (issuer.jwks_uri !== undefined && urlHostKind(issuer.jwks_uri) === 'private') {
      problems.push(
        error(
          'issuer-jwks-private',
          at(file, ['issuers', index, 'jwks_uri']),
          `issuer ${issuer.id} publishes its keys at ${issuer.jwks_uri}, which a Worker cannot fetch: every attestation from it would be refused`,
          "use the issuer's public JWKS URL, or give its keys inline under jwks",
        ),
      );
    }
    if (!bound.has(issuer.id) && agents !== undefined) {
      problems.push(
        warning(
          'unused-issuer',
          at(file, ['issuers', index]),
          `issuer ${issuer.id} is trusted, but no agent is bound to it`,
          'remove it, or bind an agent to it in agents.yaml',
        ),
      );
    }
  }
}

function checkWebhook(sources: PolicySources, problems: DeployProblem[]) {
  const settings = sources.settings;
  const webhook = settings?.data.approvals.webhook;
  if (settings === undefined || webhook === undefined) return;
  const where = at(settings, ['approvals', 'webhook']);
  const kind = urlHostKind(webhook);
  const fix = "point approvals.webhook at your approvers' https endpoint, or remove it (approvers then poll)";
  if (kind === 'example') {
    problems.push(error('example-webhook', where, `approvals.webhook ${webhook} is an example address`, fix));
  } else if (kind === 'private') {
    problems.push(
      error('webhook-not-public', where, `approvals.webhook ${webhook} is a local address a Worker cannot reach`, fix),
    );
  }
  if (webhook.startsWith('http:')) {
    problems.push(
      error(
        'webhook-not-https',
        where,
        `approvals.webhook ${webhook} is plain http: approval requests (agent, task, justification) would travel in clear`,
        fix,
      ),
    );
  }
}

/**
 * Agents whose access review is overdue (`review_by` passed, UTC), that have no review date, or whose
 * `expires` date has come (the broker refuses them; the entry is left to remove). Demo agents are skipped:
 * a deploy refuses them anyway.
 */
function checkLifecycle(
  sources: PolicySources,
  demoAgents: ReadonlySet<string>,
  nowMs: number,
  problems: DeployProblem[],
) {
  if (sources.agents === undefined) return;
  const { file, entries } = sources.agents;
  const today = utcDay(nowMs);
  for (const { index, value: agent } of entries) {
    if (demoAgents.has(agent.id)) continue;
    if (agent.expires !== undefined && today >= agent.expires) {
      problems.push(
        warning(
          'agent-expired',
          at(file, ['agents', index, 'expires']),
          `agent ${agent.id} expired on ${agent.expires}: the broker refuses it every token`,
          'remove the agent from agents.yaml, or move expires on after a review',
        ),
      );
    } else if (agent.review_by === undefined) {
      problems.push(
        warning(
          'agent-no-review-date',
          at(file, ['agents', index]),
          `agent ${agent.id} has no review_by date: its access is never due for review`,
          'give it a review_by date (YYYY-MM-DD), at most a quarter or a year ahead',
        ),
      );
    } else if (today > agent.review_by) {
      problems.push(
        warning(
          'agent-past-review',
          at(file, ['agents', index, 'review_by']),
          `agent ${agent.id} was due for an access review by ${agent.review_by}`,
          'review it (`npm run cli -- review`), narrow what it does not use, then move review_by on',
        ),
      );
    }
  }
}

/**
 * Checks the policy sources; returns the problems and what the demo left, which the grant and test
 * checks need.
 */
export async function checkPolicySources(
  sources: PolicySources,
  demo: DemoSecrets,
  nowMs: number,
): Promise<{ problems: DeployProblem[]; demoUse: DemoUse }> {
  const problems: DeployProblem[] = [];
  const { agents, credentials } = await checkDemoSecrets(sources, demo, problems);
  const access = checkAccess(sources, problems);
  checkAgentsAndIssuers(sources, agents, problems);
  checkWebhook(sources, problems);
  checkLifecycle(sources, agents, nowMs, problems);
  return { problems, demoUse: { agents, credentials, access } };
}
