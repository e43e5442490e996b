/**
 * Access tokens: JWTs in the RFC 9068 profile, scoped to one audience, the granted actions and one task.
 */
import type { AgentTokenClaims } from '@tessera/verify';
import { base64url, errors, type JWTVerifyGetKey, jwtVerify, SignJWT } from 'jose';
import { z } from 'zod';
import { KeySourceError } from './errors';
import { referencedTokenStatus } from './status-list';

/** Header `typ` of every access token (RFC 9068 §2.1). */
export const ACCESS_TOKEN_TYP = 'at+jwt';
export const SIGNING_ALG = 'ES256';

export interface SigningKey {
  kid: string;
  key: CryptoKey;
}

/**
 * The claims of an access token (RFC 9068 §2.2 plus Tessera's `task`, `owner` and `policy`): the same shape
 * downstream verifiers read, defined once in `@tessera/verify`.
 */
export type AccessTokenClaims = AgentTokenClaims;

/** Base64url SHA-256 of a task description: the `task.hash` claim. */
export async function taskHash(description: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(description));
  return base64url.encode(new Uint8Array(digest));
}

export interface AccessTokenInput {
  issuer: string;
  agent: { id: string; owner: string };
  audience: string;
  actions: readonly string[];
  task: { id: string; hash: string };
  policyVersion: string;
  ttl: number;
  jti: string;
  now: Date;
  approval?: { id: string; by: string[] };
  /** RFC 7638 thumbprint of the DPoP key the token is bound to. */
  dpopJkt?: string;
  /** The token's entry in a status list (draft-ietf-oauth-status-list §6.1): `status.status_list`. */
  status?: { idx: number; uri: string };
}

/** Builds the claims of an access token; `iat` = `nbf` = now, `exp` = now + ttl. */
export function accessTokenClaims(input: AccessTokenInput): AccessTokenClaims {
  const iat = Math.floor(input.now.getTime() / 1000);
  return {
    iss: input.issuer,
    sub: input.agent.id,
    client_id: input.agent.id,
    aud: input.audience,
    iat,
    nbf: iat,
    exp: iat + input.ttl,
    jti: input.jti,
    scope: input.actions.join(' '),
    task: input.task,
    owner: input.agent.owner,
    policy: input.policyVersion,
    ...(input.approval !== undefined && {
      approval: {
        id: input.approval.id,
        by: input.approval.by.length === 1 ? (input.approval.by[0] as string) : input.approval.by,
      },
    }),
    ...(input.dpopJkt !== undefined && { cnf: { jkt: input.dpopJkt } }),
    ...(input.status !== undefined && { status: referencedTokenStatus(input.status.idx, input.status.uri) }),
  };
}

/** Signs access-token claims with ES256 under `typ: at+jwt` and the key's `kid`. */
export function signAccessToken(claims: AccessTokenClaims, signingKey: SigningKey): Promise<string> {
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: SIGNING_ALG, typ: ACCESS_TOKEN_TYP, kid: signingKey.kid })
    .sign(signingKey.key);
}

const Claims = z.object({
  iss: z.string(),
  sub: z.string().min(1),
  client_id: z.string(),
  aud: z.string(),
  iat: z.number().int(),
  nbf: z.number().int(),
  exp: z.number().int(),
  jti: z.string().min(1),
  scope: z.string(),
  task: z.object({ id: z.string().min(1), hash: z.string() }),
  owner: z.string(),
  policy: z.string(),
  approval: z.object({ id: z.string(), by: z.union([z.string(), z.array(z.string())]) }).optional(),
  cnf: z.object({ jkt: z.string() }).optional(),
  status: z.object({ status_list: z.object({ idx: z.number().int().nonnegative(), uri: z.string() }) }).optional(),
});

export type AccessTokenCheck = { valid: true; claims: AccessTokenClaims } | { valid: false; reason: string };

/**
 * Verifies one of the broker's own access tokens: signature by a published key, `typ: at+jwt`, ES256,
 * `iss`, `exp`/`nbf` with no tolerance (the broker issues and checks them on its own clock: a token is dead
 * from its `exp` on, RFC 7519 §4.1.4), and the claims' shape. Revocation is not checked here.
 *
 * @throws {KeySourceError} when the broker's keys cannot be had (a fault, not an invalid token).
 */
export async function verifyAccessToken(
  token: string,
  options: { issuer: string; getKey: JWTVerifyGetKey; now: Date },
): Promise<AccessTokenCheck> {
  try {
    const { payload } = await jwtVerify(token, options.getKey, {
      issuer: options.issuer,
      typ: ACCESS_TOKEN_TYP,
      algorithms: [SIGNING_ALG],
      currentDate: options.now,
    });
    const claims = Claims.safeParse(payload);
    return claims.success ? { valid: true, claims: claims.data } : { valid: false, reason: 'malformed_claims' };
  } catch (error) {
    if (error instanceof KeySourceError) throw error;
    return { valid: false, reason: error instanceof errors.JOSEError ? error.code : 'malformed' };
  }
}
