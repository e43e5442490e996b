/**
 * The compiled policy bundle: what `npm run policy:build` writes from `policies/` and the worker loads once
 * per isolate. The worker re-validates it with this schema at start-up so a hand-edited or stale bundle
 * stops the worker instead of issuing on doubt.
 */
import { z } from 'zod';

/** Attestation signature algorithms the broker ever accepts; `none` and HS* are never allowed. */
export const ATTESTATION_ALGORITHMS = ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'] as const;
export type AttestationAlgorithm = (typeof ATTESTATION_ALGORITHMS)[number];

/** No grant may let a token live longer than this, whatever the policy files say. */
export const TTL_CEILING_SECONDS = 3600;

const PublicJwk = z
  .object({ kty: z.string(), kid: z.string().min(1), alg: z.enum(ATTESTATION_ALGORITHMS).optional() })
  .catchall(z.unknown())
  .refine((jwk) => !('d' in jwk) && !('k' in jwk), 'a public JWK must not carry private or symmetric key material');
export type PublicJwk = z.infer<typeof PublicJwk>;

export const Jwks = z.object({ keys: z.array(PublicJwk).min(1) });

/** A claim constraint: an exact value, or a string glob where `*` matches any run of characters. */
export const ClaimMatch = z.union([z.string().min(1), z.number(), z.boolean()]);
export type ClaimMatch = z.infer<typeof ClaimMatch>;

const AgentAttestation = z.discriminatedUnion('kind', [
  /** A JWT the agent signs itself with a registered key: `iss` = `sub` = the agent id. */
  z.object({ kind: z.literal('self_signed'), jwks: Jwks }),
  /** A token from a trusted workload-identity issuer, bound to this agent by its claims. */
  z.object({
    kind: z.literal('issuer'),
    issuer: z.string().min(1),
    subject: z.string().min(1),
    claims: z.record(z.string(), ClaimMatch),
  }),
]);

/** A token bucket: `burst` requests at once, refilled at `perMinute`. */
export const RateLimit = z.object({
  perMinute: z.number().int().positive(),
  burst: z.number().int().positive(),
});
export type RateLimit = z.infer<typeof RateLimit>;

export const Agent = z.object({
  id: z.string().min(1),
  owner: z.string().min(1),
  description: z.string(),
  labels: z.array(z.string()),
  demo: z.boolean(),
  attestation: AgentAttestation,
  /** The agent's `/token` rate limit; the broker default when absent. */
  rateLimit: RateLimit.optional(),
  /** Every token of this agent must be DPoP-bound (RFC 9449). */
  requireDpop: z.boolean().optional(),
  /** `YYYY-MM-DD` (UTC): the date by which its access is reviewed; a warning past it, never a refusal. */
  reviewBy: z.iso.date().optional(),
  /** `YYYY-MM-DD` (UTC): from this date on, `/token` refuses the agent (`agent_expired`). */
  expires: z.iso.date().optional(),
});
export type Agent = z.infer<typeof Agent>;

export const TrustedIssuer = z
  .object({
    id: z.string().min(1),
    /** The `iss` value its tokens carry. */
    issuer: z.string().min(1),
    jwksUri: z.url().optional(),
    jwks: Jwks.optional(),
    algorithms: z.array(z.enum(ATTESTATION_ALGORITHMS)).min(1),
    /** The claim that names the workload (`sub` for GitHub, Kubernetes and SPIFFE). */
    subjectClaim: z.string().min(1),
    /** Claims every token of this issuer must carry, whatever the agent. */
    claims: z.record(z.string(), ClaimMatch),
    maxAge: z.number().int().positive(),
  })
  .refine(
    (issuer) => (issuer.jwksUri === undefined) !== (issuer.jwks === undefined),
    'exactly one of jwksUri and jwks',
  );
export type TrustedIssuer = z.infer<typeof TrustedIssuer>;

/**
 * What undoes a grant that needs approval (`@rollback`, `@rollback_action`), or why nothing does
 * (`@no_rollback`): shown to the approvers, kept in the approval and its audit records.
 */
export const Rollback = z.union([
  z.strictObject({ runbook: z.url({ protocol: /^https$/ }), action: z.string().min(1).optional() }),
  z.strictObject({ action: z.string().min(1) }),
  z.strictObject({ none: z.string().min(1) }),
]);
export type Rollback = z.infer<typeof Rollback>;

export const Grant = z.object({
  /** `file:line` of the Cedar policy, for audit records and error messages. */
  source: z.string(),
  effect: z.enum(['permit', 'forbid']),
  /** The `@max_ttl` annotation: the longest token this grant allows, in seconds. */
  maxTtl: z.number().int().positive().max(TTL_CEILING_SECONDS).optional(),
  /** `@approvals`, `@approver_group`, `@four_eyes`: who must approve when this grant needs `context.approved`. */
  approval: z
    .object({ count: z.number().int().min(1).max(5), group: z.string().min(1).optional(), fourEyes: z.boolean() })
    .optional(),
  /** The rollback path of a grant that needs approval; the compiler refuses such a grant without one. */
  rollback: Rollback.optional(),
  /**
   * Set when the policy reads the time (`now`, `hour_utc`, `weekday_utc`, or the whole context): the actions
   * and the API its scope names (absent: any). The access review asks the engine at every hour of a week
   * only where such a policy may apply.
   */
  timed: z.object({ actions: z.array(z.string()).optional(), audience: z.string().optional() }).optional(),
});
export type Grant = z.infer<typeof Grant>;

export const Settings = z.object({
  tokens: z.object({
    defaultTtl: z.number().int().positive().max(TTL_CEILING_SECONDS),
    maxTtl: z.number().int().positive().max(TTL_CEILING_SECONDS),
  }),
  attestations: z.object({ maxAge: z.number().int().positive(), clockSkew: z.number().int().nonnegative().max(300) }),
  signingKeys: z.object({ rotationPeriod: z.number().int().min(600) }),
  jwks: z.object({ cacheMaxAge: z.number().int().positive(), refetchInterval: z.number().int().positive() }),
  rateLimit: RateLimit,
  approvals: z.object({
    /** Seconds a pending approval waits for its decision. */
    expiresIn: z.number().int().positive(),
    /** Seconds an agent waits between polls (CIBA `interval`). */
    pollInterval: z.number().int().positive(),
    /** Where a pending approval is announced (HMAC-signed with the `APPROVAL_WEBHOOK_SECRET` secret). */
    webhook: z.url().optional(),
  }),
  /** DPoP-bound tokens (RFC 9449) at `/token`. */
  dpop: z.object({
    /** Seconds a proof is accepted after its `iat`. */
    maxAge: z.number().int().positive(),
    /** Proofs must carry a nonce the broker issued (RFC 9449 §8). */
    nonce: z.boolean(),
    /** Audiences whose tokens must be DPoP-bound, whatever the agent. */
    requiredAudiences: z.array(z.string().min(1)),
  }),
  /** The audit log's hot window in D1; older records move to the archive in R2 (`worker/audit/archive.ts`). */
  audit: z.object({
    /** Days a record stays in D1. */
    hotDays: z.number().int().min(1),
    /** Bytes D1 may hold before the oldest records move to the archive early (D1's own cap is 10 GB). */
    hotMaxBytes: z.number().int().positive(),
    /** Records per archive segment (one R2 object). */
    segmentRecords: z.number().int().min(100),
  }),
  /** The token status lists (draft-ietf-oauth-status-list) at `GET /status/{list}`. */
  statusLists: z.object({
    /** Seconds a verifier (and the colo's cache) may use a list: a revocation reaches it within this. */
    ttl: z.number().int().min(10).max(3600),
  }),
});
export type Settings = z.infer<typeof Settings>;

/** Admin roles: `admin` (kill switch, revoke, suspend), `approver` (approvals), `auditor` (read the audit log). */
export const ADMIN_ROLES = ['admin', 'approver', 'auditor'] as const;
export type AdminRole = (typeof ADMIN_ROLES)[number];

export const AdminCredential = z.object({
  id: z.string().min(1),
  role: z.enum(ADMIN_ROLES),
  /** Hex SHA-256 of the credential's secret part; the secret itself is never stored. */
  secretSha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Approver groups (e.g. `security`) a grant's `@approver_group` can require. */
  groups: z.array(z.string().min(1)),
  demo: z.boolean(),
});
export type AdminCredential = z.infer<typeof AdminCredential>;

export const AccessConfig = z.object({
  /** e.g. `https://acme.cloudflareaccess.com`: the `iss` of Access JWTs; certs at `/cdn-cgi/access/certs`. */
  teamDomain: z.url(),
  /** The Access application's AUD tag. */
  audience: z.string().min(1),
  /** First match wins: an exact email or a glob such as `*@acme.com`. */
  roles: z.array(z.object({ match: z.string().min(1), role: z.enum(ADMIN_ROLES), groups: z.array(z.string().min(1)) })),
});
export type AccessConfig = z.infer<typeof AccessConfig>;

/** A downstream API, by its audience: the credential it introspects its tokens with (RFC 7662 §2.1). */
export const Api = z.object({
  audience: z.string().min(1),
  /** Hex SHA-256 of its introspection credential's secret part; the secret itself is never stored. */
  introspectionSecretSha256: z.string().regex(/^[0-9a-f]{64}$/),
  demo: z.boolean(),
});
export type Api = z.infer<typeof Api>;

export const PolicyBundle = z.object({
  /** Content hash of everything below: the `policy` claim of every token and audit record. */
  version: z.string().regex(/^[0-9a-f]{16}$/),
  settings: Settings,
  agents: z.record(z.string(), Agent),
  issuers: z.record(z.string(), TrustedIssuer),
  admins: z.object({ credentials: z.record(z.string(), AdminCredential), access: AccessConfig.optional() }),
  /** The APIs that may introspect, by audience. */
  apis: z.record(z.string(), Api),
  cedar: z.object({
    schema: z.string(),
    /** Every action the schema declares, so unknown actions are refused before Cedar sees them. */
    actions: z.array(z.string()),
    policies: z.record(z.string(), z.string()),
    grants: z.record(z.string(), Grant),
    /**
     * Every context attribute some policy reads; absent when a policy uses the context as a whole. Decisions
     * depend on nothing else in the context, which lets the engine reuse them.
     */
    contextKeys: z.array(z.string()).optional(),
    /**
     * Every entity id some policy names (`Agent::"release-bot"`, `Api::"https://…"`), and every attribute
     * some policy reads of anything (`principal.labels`, `context.approved`). Cedar reads an entity's id
     * no other way, so two agents no policy names, alike in the attributes read, get the same decisions.
     */
    named: z.object({ ids: z.array(z.string()), attributes: z.array(z.string()) }),
  }),
});
export type PolicyBundle = z.infer<typeof PolicyBundle>;

/** The API declared for `audience`, or undefined; like {@link inventoryAgent}, by own property only. */
export function declaredApi(bundle: Pick<PolicyBundle, 'apis'>, audience: string): Api | undefined {
  return Object.hasOwn(bundle.apis, audience) ? bundle.apis[audience] : undefined;
}

/**
 * The agent of the inventory with id `id`, or undefined. The id comes from the caller (a claim, a path): by
 * own property only, so `constructor` or `__proto__` is an unknown agent, not something of `Object.prototype`.
 */
export function inventoryAgent(bundle: Pick<PolicyBundle, 'agents'>, id: string): Agent | undefined {
  return Object.hasOwn(bundle.agents, id) ? bundle.agents[id] : undefined;
}
