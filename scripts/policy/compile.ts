/**
 * Compiles `policies/` into the bundle the worker loads: validates the settings, the agent inventory, the
 * trusted issuers, the Cedar schema and every Cedar policy (strict validation), and hashes the result.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { importJWK } from 'jose';
import { z } from 'zod';
import {
  ADMIN_ROLES,
  type Agent,
  ATTESTATION_ALGORITHMS,
  ClaimMatch,
  type Grant,
  Jwks,
  PolicyBundle,
  type TrustedIssuer,
  TTL_CEILING_SECONDS,
} from '../../worker/policy/bundle';
import { lineAt, PolicyError, readYaml } from './source';

const Seconds = z.number().int().positive();
const AgentId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'an agent id is 1-64 of a-z 0-9 . _ - ');
const Claims = z.record(z.string(), ClaimMatch).default({});

const RateLimitFile = z.strictObject({ per_minute: Seconds.max(600_000), burst: Seconds.max(10_000) });

const SettingsFile = z.strictObject({
  tokens: z.strictObject({ default_ttl: Seconds.max(TTL_CEILING_SECONDS), max_ttl: Seconds.max(TTL_CEILING_SECONDS) }),
  attestations: z.strictObject({ max_age: Seconds.max(3600), clock_skew: z.number().int().min(0).max(300) }),
  signing_keys: z.strictObject({ rotation_period: z.number().int().min(600) }),
  jwks: z.strictObject({ cache_max_age: Seconds, refetch_interval: Seconds }),
  rate_limit: RateLimitFile,
  approvals: z.strictObject({
    expires_in: Seconds.max(7 * 24 * 3600),
    poll_interval: Seconds.max(60),
    webhook: z.url({ protocol: /^https?$/ }).optional(),
  }),
  dpop: z
    .strictObject({
      proof_max_age: Seconds.max(300).default(60),
      nonce: z.boolean().default(false),
      required_audiences: z.array(z.string().min(1)).default([]),
    })
    .default({ proof_max_age: 60, nonce: false, required_audiences: [] }),
});

const AgentsFile = z.strictObject({
  agents: z.array(
    z.strictObject({
      id: AgentId,
      owner: z.string().min(1, 'every agent needs an accountable human owner'),
      description: z.string().default(''),
      labels: z.array(z.string().min(1)).default([]),
      demo: z.boolean().default(false),
      rate_limit: RateLimitFile.optional(),
      require_dpop: z.boolean().default(false),
      attestation: z.union([
        z.strictObject({ self_signed: z.strictObject({ keys: Jwks.shape.keys }) }),
        z.strictObject({ issuer: z.string().min(1), subject: z.string().min(1), claims: Claims }),
      ]),
    }),
  ),
});

const IssuersFile = z.strictObject({
  issuers: z.array(
    z
      .strictObject({
        id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/),
        issuer: z.url(),
        jwks_uri: z.url({ protocol: /^https$/, error: 'jwks_uri must be an https URL' }).optional(),
        jwks: Jwks.optional(),
        algorithms: z.array(z.enum(ATTESTATION_ALGORITHMS)).min(1),
        subject_claim: z.string().min(1).default('sub'),
        claims: Claims,
        max_age: Seconds.max(3600).optional(),
      })
      .refine((issuer) => (issuer.jwks_uri === undefined) !== (issuer.jwks === undefined), {
        message: 'give exactly one of jwks_uri and jwks',
      }),
  ),
});

const AdminsFile = z.strictObject({
  credentials: z
    .array(
      z.strictObject({
        id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'a credential id is 1-64 of a-z 0-9 -'),
        role: z.enum(ADMIN_ROLES),
        secret_sha256: z
          .string()
          .regex(/^[0-9a-f]{64}$/, 'the hex SHA-256 that `npm run cli -- admin-credential` prints'),
        groups: z.array(z.string().min(1)).default([]),
        demo: z.boolean().default(false),
      }),
    )
    .default([]),
  cloudflare_access: z
    .strictObject({
      team_domain: z.url({ protocol: /^https$/ }),
      audience: z.string().min(1),
      roles: z
        .array(
          z.strictObject({
            match: z.string().min(1),
            role: z.enum(ADMIN_ROLES),
            groups: z.array(z.string().min(1)).default([]),
          }),
        )
        .min(1),
    })
    .optional(),
});

export interface CompileOptions {
  /** Refuse agents marked `demo: true` (their keys are public). */
  forDeploy?: boolean;
}

function duplicates(ids: readonly string[]): string[] {
  return ids.filter((id, index) => ids.indexOf(id) !== index);
}

function failIfDuplicate(ids: readonly string[], file: string, lineOf: (index: number) => number, what: string) {
  const [dup] = duplicates(ids);
  if (dup !== undefined) throw new PolicyError(file, lineOf(ids.lastIndexOf(dup)), `duplicate ${what} ${dup}`);
}

async function checkKeys(keys: z.infer<typeof Jwks>['keys'], file: string, line: number) {
  for (const jwk of keys) {
    if (jwk.alg === undefined) throw new PolicyError(file, line, `key ${jwk.kid} needs an alg`);
    try {
      await importJWK(jwk, jwk.alg);
    } catch (error) {
      throw new PolicyError(file, line, `key ${jwk.kid} is not a usable public key: ${String(error)}`);
    }
  }
  failIfDuplicate(
    keys.map((key) => key.kid),
    file,
    () => line,
    'kid',
  );
}

function cedarError(file: string, text: string, errors: readonly cedar.DetailedError[]): PolicyError {
  const [first] = errors;
  const offset = first?.sourceLocations?.[0]?.start ?? 0;
  const label = first?.sourceLocations?.[0]?.label;
  const message = [first?.message ?? 'invalid', label, first?.help].filter(Boolean).join(' — ');
  return new PolicyError(file, lineAt(text, offset), message);
}

interface CedarFile {
  path: string;
  text: string;
}

async function readCedarFiles(dir: string): Promise<CedarFile[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.cedar')).sort();
  if (names.length === 0) throw new PolicyError(relative(process.cwd(), dir), 1, 'no .cedar policy files');
  return Promise.all(
    names.map(async (name) => ({
      path: relative(process.cwd(), join(dir, name)),
      text: await readFile(join(dir, name), 'utf8'),
    })),
  );
}

function compileCedar(schemaPath: string, schema: string, files: readonly CedarFile[]) {
  const parsedSchema = cedar.checkParseSchema(schema);
  if (parsedSchema.type === 'failure') throw cedarError(schemaPath, schema, parsedSchema.errors);
  const schemaJson = cedar.schemaToJson(schema);
  if (schemaJson.type === 'failure') throw cedarError(schemaPath, schema, schemaJson.errors);
  const actions = Object.values(schemaJson.json).flatMap((namespace) => Object.keys(namespace.actions));

  const policies: Record<string, string> = {};
  const grants: Record<string, Grant> = {};
  const contextKeys = new Set<string>();
  let wholeContext = false;
  for (const file of files) {
    const parsed = cedar.checkParsePolicySet({ staticPolicies: file.text });
    if (parsed.type === 'failure') throw cedarError(file.path, file.text, parsed.errors);
    const validated = cedar.validate({
      schema,
      policies: { staticPolicies: file.text },
      validationSettings: { mode: 'strict' },
    });
    if (validated.type === 'failure') throw cedarError(file.path, file.text, validated.errors);
    const [invalid] = validated.validationErrors;
    if (invalid !== undefined) throw cedarError(file.path, file.text, [invalid.error]);
    const parts = cedar.policySetTextToParts(file.text);
    if (parts.type === 'failure') throw cedarError(file.path, file.text, parts.errors);
    if (parts.policy_templates.length > 0) throw new PolicyError(file.path, 1, 'policy templates are not supported');

    // Cedar numbers the policies of a text policy0, policy1, ... in order; locate each by its first line.
    let searchFrom = 0;
    parts.policies.forEach((text, index) => {
      const json = cedar.policyToJson(text);
      if (json.type === 'failure') throw cedarError(file.path, file.text, json.errors);
      const firstLine = text.split('\n')[0] ?? '';
      const offset = Math.max(file.text.indexOf(firstLine, searchFrom), 0);
      searchFrom = offset + firstLine.length;
      const line = lineAt(file.text, offset);
      const annotations = json.json.annotations ?? {};
      const id = annotations.id ?? `${file.path}#${index}`;
      if (policies[id] !== undefined) throw new PolicyError(file.path, line, `duplicate policy @id ${id}`);
      let maxTtl: number | undefined;
      if (annotations.max_ttl !== undefined) {
        maxTtl = Number(annotations.max_ttl);
        if (!Number.isInteger(maxTtl) || maxTtl < 1 || maxTtl > TTL_CEILING_SECONDS) {
          throw new PolicyError(file.path, line, `@max_ttl must be whole seconds from 1 to ${TTL_CEILING_SECONDS}`);
        }
        if (json.json.effect === 'forbid')
          throw new PolicyError(file.path, line, '@max_ttl only applies to permit policies');
      }
      const approval = approvalRequirement(annotations, json.json.effect, file.path, line);
      if (!collectContextKeys(json.json, contextKeys)) wholeContext = true;
      policies[id] = text;
      grants[id] = {
        source: `${file.path}:${line}`,
        effect: json.json.effect,
        ...(maxTtl !== undefined && { maxTtl }),
        ...(approval !== undefined && { approval }),
      };
    });
  }
  return { schema, actions, policies, grants, ...(!wholeContext && { contextKeys: [...contextKeys].sort() }) };
}

function isContextVar(node: unknown): boolean {
  return typeof node === 'object' && node !== null && (node as { Var?: unknown }).Var === 'context';
}

/**
 * Adds to `into` the context attributes a policy reads (`context.x`, `context has x`) in its JSON form.
 *
 * @returns false when the policy uses `context` some other way (as a whole), so no attribute list covers it.
 */
function collectContextKeys(node: unknown, into: Set<string>): boolean {
  if (Array.isArray(node)) return node.every((child) => collectContextKeys(child, into));
  if (typeof node !== 'object' || node === null) return true;
  if (isContextVar(node)) return false;
  let complete = true;
  for (const [key, value] of Object.entries(node)) {
    const access = value as { left?: unknown; attr?: unknown } | null;
    if ((key === '.' || key === 'has') && isContextVar(access?.left) && typeof access?.attr === 'string') {
      into.add(access.attr);
    } else if (!collectContextKeys(value, into)) {
      complete = false;
    }
  }
  return complete;
}

/** `@approvals("n")`, `@approver_group("g")`, `@four_eyes("true"|"false")` of a permit, if any. */
function approvalRequirement(
  annotations: Record<string, string>,
  effect: 'permit' | 'forbid',
  file: string,
  line: number,
): Grant['approval'] {
  const { approvals, approver_group: group, four_eyes: fourEyes } = annotations;
  if (approvals === undefined) {
    if (group !== undefined || fourEyes !== undefined) {
      throw new PolicyError(file, line, '@approver_group and @four_eyes need @approvals');
    }
    return undefined;
  }
  if (effect === 'forbid') throw new PolicyError(file, line, '@approvals only applies to permit policies');
  const count = Number(approvals);
  if (!Number.isInteger(count) || count < 1 || count > 5)
    throw new PolicyError(file, line, '@approvals must be 1 to 5');
  if (fourEyes !== undefined && fourEyes !== 'true' && fourEyes !== 'false') {
    throw new PolicyError(file, line, '@four_eyes must be "true" or "false"');
  }
  return { count, ...(group !== undefined && { group }), fourEyes: fourEyes === 'true' };
}

function contentHash(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/**
 * Compiles the policy folder `dir` into a validated {@link PolicyBundle}.
 *
 * @throws {PolicyError} naming the file and line of the first problem.
 */
export async function compilePolicies(dir: string, options: CompileOptions = {}): Promise<PolicyBundle> {
  const settingsFile = await readYaml(join(dir, 'tessera.yaml'), SettingsFile);
  const issuersFile = await readYaml(join(dir, 'issuers.yaml'), IssuersFile);
  const agentsFile = await readYaml(join(dir, 'agents.yaml'), AgentsFile);
  const s = settingsFile.data;

  const issuers: Record<string, TrustedIssuer> = {};
  const issuerList = issuersFile.data.issuers;
  failIfDuplicate(
    issuerList.map((i) => i.id),
    issuersFile.path,
    (i) => issuersFile.lineOf(['issuers', i]),
    'issuer id',
  );
  failIfDuplicate(
    issuerList.map((i) => i.issuer),
    issuersFile.path,
    (i) => issuersFile.lineOf(['issuers', i]),
    'issuer URL',
  );
  for (const [index, issuer] of issuerList.entries()) {
    if (issuer.jwks)
      await checkKeys(issuer.jwks.keys, issuersFile.path, issuersFile.lineOf(['issuers', index, 'jwks']));
    issuers[issuer.id] = {
      id: issuer.id,
      issuer: issuer.issuer,
      ...(issuer.jwks_uri !== undefined && { jwksUri: issuer.jwks_uri }),
      ...(issuer.jwks !== undefined && { jwks: issuer.jwks }),
      algorithms: issuer.algorithms,
      subjectClaim: issuer.subject_claim,
      claims: issuer.claims,
      maxAge: issuer.max_age ?? s.attestations.max_age,
    };
  }

  const agents: Record<string, Agent> = {};
  const agentList = agentsFile.data.agents;
  const agentLine = (index: number, ...rest: PropertyKey[]) => agentsFile.lineOf(['agents', index, ...rest]);
  failIfDuplicate(
    agentList.map((a) => a.id),
    agentsFile.path,
    (i) => agentLine(i),
    'agent id',
  );
  for (const [index, agent] of agentList.entries()) {
    if (options.forDeploy && agent.demo) {
      throw new PolicyError(
        agentsFile.path,
        agentLine(index),
        `agent ${agent.id} is a demo agent (its key is public); remove it before deploying`,
      );
    }
    const source = agent.attestation;
    let attestation: Agent['attestation'];
    if ('self_signed' in source) {
      await checkKeys(source.self_signed.keys, agentsFile.path, agentLine(index, 'attestation'));
      attestation = { kind: 'self_signed', jwks: { keys: source.self_signed.keys } };
    } else {
      if (issuers[source.issuer] === undefined) {
        throw new PolicyError(
          agentsFile.path,
          agentLine(index, 'attestation', 'issuer'),
          `unknown issuer ${source.issuer}`,
        );
      }
      attestation = { kind: 'issuer', issuer: source.issuer, subject: source.subject, claims: source.claims };
    }
    if (issuers[agent.id] !== undefined || Object.values(issuers).some((i) => i.issuer === agent.id)) {
      throw new PolicyError(agentsFile.path, agentLine(index), `agent id ${agent.id} collides with a trusted issuer`);
    }
    agents[agent.id] = {
      id: agent.id,
      owner: agent.owner,
      description: agent.description,
      labels: agent.labels,
      demo: agent.demo,
      attestation,
      ...(agent.rate_limit && { rateLimit: { perMinute: agent.rate_limit.per_minute, burst: agent.rate_limit.burst } }),
      ...(agent.require_dpop && { requireDpop: true }),
    };
  }

  const adminsFile = await readYaml(join(dir, 'admins.yaml'), AdminsFile);
  const credentialList = adminsFile.data.credentials;
  const credentialLine = (index: number) => adminsFile.lineOf(['credentials', index]);
  failIfDuplicate(
    credentialList.map((c) => c.id),
    adminsFile.path,
    credentialLine,
    'credential id',
  );
  failIfDuplicate(
    credentialList.map((c) => c.secret_sha256),
    adminsFile.path,
    credentialLine,
    'credential secret',
  );
  const credentials: PolicyBundle['admins']['credentials'] = {};
  for (const [index, credential] of credentialList.entries()) {
    if (options.forDeploy && credential.demo) {
      throw new PolicyError(
        adminsFile.path,
        credentialLine(index),
        `credential ${credential.id} is a demo credential (its secret is public); remove it before deploying`,
      );
    }
    credentials[credential.id] = {
      id: credential.id,
      role: credential.role,
      secretSha256: credential.secret_sha256,
      groups: credential.groups,
      demo: credential.demo,
    };
  }
  const access = adminsFile.data.cloudflare_access;

  const schemaPath = join(dir, 'schema.cedarschema');
  const schemaText = await readFile(schemaPath, 'utf8');
  const compiledCedar = compileCedar(relative(process.cwd(), schemaPath), schemaText, await readCedarFiles(dir));

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
    },
    agents,
    issuers,
    admins: {
      credentials,
      ...(access && { access: { teamDomain: access.team_domain, audience: access.audience, roles: access.roles } }),
    },
    cedar: compiledCedar,
  };
  // The worker re-validates with the same schema at start-up; checking here fails the build instead.
  return PolicyBundle.parse({ version: contentHash(body), ...body });
}
