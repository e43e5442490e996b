/**
 * Compiles `policies/` into the bundle the worker loads: validates the settings, the agent inventory, the
 * trusted issuers, the admins, the APIs' introspection credentials, the Cedar schema and every Cedar policy (strict validation), and hashes the
 * result. Every problem is collected, each with its file and line, so one run reports them all.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { importJWK } from 'jose';
import type { z } from 'zod';
import { type Agent, type Jwks, PolicyBundle, type TrustedIssuer } from '../../worker/policy/bundle';
import { compileCedar } from './cedar';
import {
  AccessEntry,
  AdminsFile,
  AgentEntry,
  AgentsFile,
  ApiEntry,
  ApisFile,
  CredentialEntry,
  IssuerEntry,
  IssuersFile,
  SettingsFile,
} from './schemas';
import {
  type Entry,
  PolicyError,
  type PolicyProblem,
  Problems,
  readYaml,
  type SourceFile,
  validEntries,
} from './source';

export interface CompileOptions {
  /** Refuse agents, admin and introspection credentials marked `demo: true` (their secrets are public). */
  forDeploy?: boolean;
}

/** A list file of the policy folder and its entries that passed their schema. */
export interface ListSource<T> {
  file: SourceFile<unknown>;
  entries: Entry<T>[];
}

/** What the policy files hold, as far as they could be read: what `npm run deploy:check` looks through. */
export interface PolicySources {
  settings?: SourceFile<SettingsFile>;
  issuers?: ListSource<IssuerEntry>;
  agents?: ListSource<AgentEntry>;
  credentials?: ListSource<CredentialEntry>;
  access?: { file: SourceFile<unknown>; value: AccessEntry };
  apis?: ListSource<ApiEntry>;
}

export interface CompiledPolicies {
  /** Everything that stops the build; with `forDeploy`, also the demo entries. */
  problems: PolicyProblem[];
  /** The bundle, when the folder compiles (demo entries refused for deploy do not prevent it). */
  bundle?: PolicyBundle;
  sources: PolicySources;
}

const DEMO_FIX = 'remove it, and add your own (docs/deploy.md)';

/** Reports every repeat of an id after its first occurrence. */
function reportDuplicates<T>(
  entries: readonly Entry<T>[],
  idOf: (value: T) => string,
  file: SourceFile<unknown>,
  lineOf: (index: number) => number,
  what: string,
  problems: Problems,
) {
  const seen = new Set<string>();
  for (const { index, value } of entries) {
    const id = idOf(value);
    if (seen.has(id)) problems.add('duplicate', file.path, lineOf(index), `duplicate ${what} ${id}`);
    seen.add(id);
  }
}

async function checkKeys(keys: z.infer<typeof Jwks>['keys'], file: string, line: number, problems: Problems) {
  const kids = new Set<string>();
  for (const jwk of keys) {
    if (kids.has(jwk.kid)) problems.add('duplicate', file, line, `duplicate kid ${jwk.kid}`);
    kids.add(jwk.kid);
    if (jwk.alg === undefined) {
      problems.add('invalid-key', file, line, `key ${jwk.kid} needs an alg`);
      continue;
    }
    try {
      await importJWK(jwk, jwk.alg);
    } catch (error) {
      problems.add('invalid-key', file, line, `key ${jwk.kid} is not a usable public key: ${String(error)}`);
    }
  }
}

async function compileIssuers(issuers: ListSource<IssuerEntry>, maxAge: number, problems: Problems) {
  const { file, entries } = issuers;
  const lineOf = (index: number, ...rest: PropertyKey[]) => file.lineOf(['issuers', index, ...rest]);
  reportDuplicates(entries, (i) => i.id, file, lineOf, 'issuer id', problems);
  reportDuplicates(entries, (i) => i.issuer, file, lineOf, 'issuer URL', problems);
  const compiled: Record<string, TrustedIssuer> = {};
  for (const { index, value: issuer } of entries) {
    if (issuer.jwks) await checkKeys(issuer.jwks.keys, file.path, lineOf(index, 'jwks'), problems);
    compiled[issuer.id] = {
      id: issuer.id,
      issuer: issuer.issuer,
      ...(issuer.jwks_uri !== undefined && { jwksUri: issuer.jwks_uri }),
      ...(issuer.jwks !== undefined && { jwks: issuer.jwks }),
      algorithms: issuer.algorithms,
      subjectClaim: issuer.subject_claim,
      claims: issuer.claims,
      maxAge: issuer.max_age ?? maxAge,
    };
  }
  return compiled;
}

/**
 * Compiles the agents. `issuerIds` and `issuerUrls` are every id and URL `issuers.yaml` names, valid
 * entries or not, so an issuer with a problem of its own does not also make its agents "unknown".
 */
async function compileAgents(
  agents: ListSource<AgentEntry>,
  issuers: { ids: ReadonlySet<string>; urls: ReadonlySet<string> } | undefined,
  problems: Problems,
) {
  const { file, entries } = agents;
  const lineOf = (index: number, ...rest: PropertyKey[]) => file.lineOf(['agents', index, ...rest]);
  reportDuplicates(entries, (a) => a.id, file, lineOf, 'agent id', problems);
  const compiled: Record<string, Agent> = {};
  for (const { index, value: agent } of entries) {
    const source = agent.attestation;
    let attestation: Agent['attestation'];
    if ('self_signed' in source) {
      await checkKeys(source.self_signed.keys, file.path, lineOf(index, 'attestation'), problems);
      attestation = { kind: 'self_signed', jwks: { keys: source.self_signed.keys } };
    } else {
      if (issuers !== undefined && !issuers.ids.has(source.issuer)) {
        problems.add(
          'unknown-issuer',
          file.path,
          lineOf(index, 'attestation', 'issuer'),
          `unknown issuer ${source.issuer}`,
          'declare it in issuers.yaml, or bind the agent to an issuer declared there',
        );
      }
      attestation = { kind: 'issuer', issuer: source.issuer, subject: source.subject, claims: source.claims };
    }
    if (issuers?.ids.has(agent.id) || issuers?.urls.has(agent.id)) {
      problems.add('id-collision', file.path, lineOf(index), `agent id ${agent.id} collides with a trusted issuer`);
    }
    compiled[agent.id] = {
      id: agent.id,
      owner: agent.owner,
      description: agent.description,
      labels: agent.labels,
      demo: agent.demo,
      attestation,
      ...(agent.rate_limit && { rateLimit: { perMinute: agent.rate_limit.per_minute, burst: agent.rate_limit.burst } }),
      ...(agent.require_dpop && { requireDpop: true }),
      ...(agent.review_by !== undefined && { reviewBy: agent.review_by }),
      ...(agent.expires !== undefined && { expires: agent.expires }),
    };
  }
  return compiled;
}

function compileCredentials(credentials: ListSource<CredentialEntry>, problems: Problems) {
  const { file, entries } = credentials;
  const lineOf = (index: number) => file.lineOf(['credentials', index]);
  reportDuplicates(entries, (c) => c.id, file, lineOf, 'credential id', problems);
  reportDuplicates(entries, (c) => c.secret_sha256, file, lineOf, 'credential secret', problems);
  const compiled: PolicyBundle['admins']['credentials'] = {};
  for (const { value: credential } of entries) {
    compiled[credential.id] = {
      id: credential.id,
      role: credential.role,
      secretSha256: credential.secret_sha256,
      groups: credential.groups,
      demo: credential.demo,
    };
  }
  return compiled;
}

function compileApis(apis: ListSource<ApiEntry>, problems: Problems) {
  const { file, entries } = apis;
  const lineOf = (index: number) => file.lineOf(['apis', index]);
  reportDuplicates(entries, (a) => a.audience, file, lineOf, 'API audience', problems);
  reportDuplicates(entries, (a) => a.introspection_secret_sha256, file, lineOf, 'introspection secret', problems);
  const compiled: PolicyBundle['apis'] = {};
  for (const { value: api } of entries) {
    compiled[api.audience] = {
      audience: api.audience,
      introspectionSecretSha256: api.introspection_secret_sha256,
      demo: api.demo,
    };
  }
  return compiled;
}

/** Reports, under `code`, every entry of a list marked `demo: true`, with the message `describe` gives it. */
function reportDemo<T extends { demo: boolean }>(
  list: ListSource<T> | undefined,
  key: string,
  code: 'demo-agent' | 'demo-admin' | 'demo-api',
  describe: (entry: T) => string,
  fix: string,
  problems: Problems,
) {
  for (const { index, value } of list?.entries ?? []) {
    if (value.demo && list !== undefined)
      problems.add(code, list.file.path, list.file.lineOf([key, index]), describe(value), fix);
  }
}

/** Refuses, for deploy, the entries marked `demo: true`: their private key or secret is in this repository. */
function refuseDemoEntries(sources: PolicySources, problems: Problems) {
  reportDemo(
    sources.agents,
    'agents',
    'demo-agent',
    (agent) => `agent ${agent.id} is a demo agent (its private key is public, in scripts/demo/)`,
    DEMO_FIX,
    problems,
  );
  reportDemo(
    sources.credentials,
    'credentials',
    'demo-admin',
    (credential) => `credential ${credential.id} is a demo credential (its secret is public, in scripts/demo/)`,
    `${DEMO_FIX}: \`npm run cli -- admin-credential --id NAME\` makes a credential`,
    problems,
  );
  reportDemo(
    sources.apis,
    'apis',
    'demo-api',
    (api) =>
      `the introspection credential of ${api.audience} is a demo credential (its secret is public, in scripts/demo/)`,
    `${DEMO_FIX}: \`npm run cli -- introspection-credential --audience URL\` makes a credential`,
    problems,
  );
}

function contentHash(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/** The `id` and `issuer` strings of every entry of `issuers.yaml`, valid or not. */
function namedIssuers(raw: readonly unknown[]): { ids: Set<string>; urls: Set<string> } {
  const named = raw.filter((entry): entry is Record<string, unknown> => typeof entry === 'object' && entry !== null);
  return {
    ids: new Set(named.map((entry) => entry.id).filter((id) => typeof id === 'string')),
    urls: new Set(named.map((entry) => entry.issuer).filter((url) => typeof url === 'string')),
  };
}

/**
 * Compiles the policy folder `dir`, collecting every problem instead of stopping at the first.
 *
 * @returns the problems, the bundle when nothing but demo entries (with `forDeploy`) stands in its way,
 *   and what the files hold, for further checks.
 */
export async function compilePolicyFolder(dir: string, options: CompileOptions = {}): Promise<CompiledPolicies> {
  const problems = new Problems();
  const sources: PolicySources = {};

  sources.settings = await readYaml(join(dir, 'tessera.yaml'), SettingsFile, problems);
  const issuersFile = await readYaml(join(dir, 'issuers.yaml'), IssuersFile, problems);
  if (issuersFile) {
    const entries = validEntries(issuersFile, 'issuers', issuersFile.data.issuers, IssuerEntry, problems);
    sources.issuers = { file: issuersFile, entries };
  }
  const agentsFile = await readYaml(join(dir, 'agents.yaml'), AgentsFile, problems);
  if (agentsFile) {
    const entries = validEntries(agentsFile, 'agents', agentsFile.data.agents, AgentEntry, problems);
    sources.agents = { file: agentsFile, entries };
  }
  const adminsFile = await readYaml(join(dir, 'admins.yaml'), AdminsFile, problems);
  if (adminsFile) {
    const entries = validEntries(adminsFile, 'credentials', adminsFile.data.credentials, CredentialEntry, problems);
    sources.credentials = { file: adminsFile, entries };
    // An empty `cloudflare_access:` means no Access, like leaving it out.
    if (adminsFile.data.cloudflare_access != null) {
      const access = AccessEntry.safeParse(adminsFile.data.cloudflare_access);
      if (access.success) sources.access = { file: adminsFile, value: access.data };
      else problems.addIssues(adminsFile, access.error, ['cloudflare_access']);
    }
  }

  const apisFile = await readYaml(join(dir, 'apis.yaml'), ApisFile, problems);
  if (apisFile)
    sources.apis = { file: apisFile, entries: validEntries(apisFile, 'apis', apisFile.data.apis, ApiEntry, problems) };

  const s = sources.settings?.data;
  const issuers = sources.issuers && (await compileIssuers(sources.issuers, s?.attestations.max_age ?? 0, problems));
  const agents =
    sources.agents &&
    (await compileAgents(sources.agents, issuersFile && namedIssuers(issuersFile.data.issuers), problems));
  const credentials = sources.credentials && compileCredentials(sources.credentials, problems);
  const apis = sources.apis && compileApis(sources.apis, problems);
  const cedar = await compileCedar(dir, problems);

  const buildable = problems.list.length === 0;
  if (options.forDeploy) refuseDemoEntries(sources, problems);
  if (!buildable || !s || !issuers || !agents || !credentials || !apis || !cedar)
    return { problems: problems.list, sources };

  const access = sources.access?.value;
  const body = {
    settings: {
      tokens: { defaultTtl: s.tokens.default_ttl, maxTtl: s.tokens.max_ttl },
      attestations: { maxAge: s.attestations.max_age, clockSkew: s.attestations.clock_skew },
      signingKeys: { rotationPeriod: s.signing_keys.rotation_period },
      jwks: { cacheMaxAge: s.jwks.cache_max_age, refetchInterval: s.jwks.refetch_interval },
      rateLimit: { perMinute: s.rate_limit.per_minute, burst: s.rate_limit.burst },
      approvals: {
        expiresIn: s.approvals.expires_in,
        pollInterval: s.approvals.poll_interval,
        ...(s.approvals.webhook !== undefined && { webhook: s.approvals.webhook }),
      },
      dpop: {
        maxAge: s.dpop.proof_max_age,
        nonce: s.dpop.nonce,
        requiredAudiences: s.dpop.required_audiences,
      },
      audit: {
        hotDays: s.audit.hot_days,
        hotMaxBytes: s.audit.hot_max_bytes,
        segmentRecords: s.audit.segment_records,
      },
      statusLists: { ttl: s.status_lists.ttl },
    },
    agents,
    issuers,
    admins: {
      credentials,
      ...(access && { access: { teamDomain: access.team_domain, audience: access.audience, roles: access.roles } }),
    },
    apis,
    cedar,
  };
  // The worker re-validates with the same schema at start-up; checking here fails the build instead.
  return { problems: problems.list, bundle: PolicyBundle.parse({ version: contentHash(body), ...body }), sources };
}

/**
 * Compiles the policy folder `dir` into a validated {@link PolicyBundle}.
 *
 * @throws {PolicyError} listing every problem, each with its file and line.
 */
export async function compilePolicies(dir: string, options: CompileOptions = {}): Promise<PolicyBundle> {
  const { problems, bundle } = await compilePolicyFolder(dir, options);
  if (problems.length > 0 || bundle === undefined) throw new PolicyError(problems);
  return bundle;
}
