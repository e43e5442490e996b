/**
 * The shapes of the YAML files in `policies/`. A list key left empty (`credentials:` with every entry
 * removed) is an empty list, and an empty optional block is absent, so removing entries never trips a
 * "received null".
 */
import { z } from 'zod';
import { ADMIN_ROLES, ATTESTATION_ALGORITHMS, ClaimMatch, Jwks, TTL_CEILING_SECONDS } from '../../worker/policy/bundle';

const Seconds = z.number().int().positive();
const AgentId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'an agent id is 1-64 of a-z 0-9 . _ - ');
const Claims = z.record(z.string(), ClaimMatch).default({});

/** A list whose entries are validated one by one (see `validEntries`); empty when left blank. */
const List = z
  .array(z.unknown())
  .nullish()
  .transform((entries) => entries ?? []);

const RateLimitFile = z.strictObject({ per_minute: Seconds.max(600_000), burst: Seconds.max(10_000) });

export const SettingsFile = z.strictObject({
  tokens: z.strictObject({ default_ttl: Seconds.max(TTL_CEILING_SECONDS), max_ttl: Seconds.max(TTL_CEILING_SECONDS) }),
  attestations: z.strictObject({ max_age: Seconds.max(3600), clock_skew: z.number().int().min(0).max(300) }),
  signing_keys: z.strictObject({ rotation_period: z.number().int().min(600) }),
  jwks: z.strictObject({ cache_max_age: Seconds, refetch_interval: Seconds }),
  rate_limit: RateLimitFile,
  approvals: z.strictObject({
    expires_in: Seconds.max(7 * 24 * 3600),
    poll_interval: Seconds.max(60),
    webhook: z
      .url({ protocol: /^https?$/ })
      .nullish()
      .transform((url) => url ?? undefined),
  }),
  dpop: z
    .strictObject({
      proof_max_age: Seconds.max(300).default(60),
      nonce: z.boolean().default(false),
      required_audiences: z
        .array(z.string().min(1))
        .nullish()
        .transform((audiences) => audiences ?? []),
    })
    .default({ proof_max_age: 60, nonce: false, required_audiences: [] }),
  audit: z
    .strictObject({
      hot_days: z.number().int().min(1).max(3650).default(30),
      // D1 caps a database at 10 GB; the hot window stays well under it, with room for the indexes to grow.
      hot_max_bytes: z.number().int().min(1_000_000).max(8_000_000_000).default(5_000_000_000),
      segment_records: z.number().int().min(100).max(200_000).default(50_000),
    })
    .default({ hot_days: 30, hot_max_bytes: 5_000_000_000, segment_records: 50_000 }),
  status_lists: z.strictObject({ ttl: Seconds.min(10).max(3600).default(60) }).default({ ttl: 60 }),
});
export type SettingsFile = z.output<typeof SettingsFile>;

export const IssuersFile = z.strictObject({ issuers: List });

export const IssuerEntry = z
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
  });
export type IssuerEntry = z.output<typeof IssuerEntry>;

export const AgentsFile = z.strictObject({ agents: List });

/** A calendar date, `YYYY-MM-DD` (YAML 1.2, the `yaml` package's default, reads an unquoted one as a string). */
const IsoDate = z.iso.date('a date is YYYY-MM-DD');

export const AgentEntry = z.strictObject({
  id: AgentId,
  owner: z.string().min(1, 'every agent needs an accountable human owner'),
  description: z.string().default(''),
  labels: z.array(z.string().min(1)).default([]),
  demo: z.boolean().default(false),
  rate_limit: RateLimitFile.optional(),
  require_dpop: z.boolean().default(false),
  /** The date (UTC) by which its owner and an admin review its access; `npm run deploy:check` warns past it. */
  review_by: IsoDate.optional(),
  /** The first date (UTC) on which the broker refuses it every token (`agent_expired`). */
  expires: IsoDate.optional(),
  attestation: z.union([
    z.strictObject({ self_signed: z.strictObject({ keys: Jwks.shape.keys }) }),
    z.strictObject({ issuer: z.string().min(1), subject: z.string().min(1), claims: Claims }),
  ]),
});
export type AgentEntry = z.output<typeof AgentEntry>;

export const AccessEntry = z.strictObject({
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
});
export type AccessEntry = z.output<typeof AccessEntry>;

export const AdminsFile = z.strictObject({
  credentials: List,
  /** Validated on its own (`AccessEntry`), so a bad Access block does not hide the credentials' checks. */
  cloudflare_access: z.unknown().optional(),
});

export const CredentialEntry = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'a credential id is 1-64 of a-z 0-9 -'),
  role: z.enum(ADMIN_ROLES),
  secret_sha256: z.string().regex(/^[0-9a-f]{64}$/, 'the hex SHA-256 that `npm run cli -- admin-credential` prints'),
  groups: z.array(z.string().min(1)).default([]),
  demo: z.boolean().default(false),
});
export type CredentialEntry = z.output<typeof CredentialEntry>;

export const ApisFile = z.strictObject({ apis: List });

export const ApiEntry = z.strictObject({
  /** The audience agents ask for and the API verifies: its client id at the introspection endpoint. */
  audience: z.string().min(1),
  introspection_secret_sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, 'the hex SHA-256 that `npm run cli -- introspection-credential` prints'),
  demo: z.boolean().default(false),
});
export type ApiEntry = z.output<typeof ApiEntry>;
