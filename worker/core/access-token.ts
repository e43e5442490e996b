/**
 * Access tokens: JWTs in the RFC 9068 profile, scoped to one audience, the granted actions and one task.
 */
import { base64url, SignJWT } from 'jose';

/** Header `typ` of every access token (RFC 9068 §2.1). */
export const ACCESS_TOKEN_TYP = 'at+jwt';
export const SIGNING_ALG = 'ES256';

export interface SigningKey {
  kid: string;
  key: CryptoKey;
}

export interface AccessTokenClaims {
  iss: string;
  sub: string;
  client_id: string;
  aud: string;
  iat: number;
  nbf: number;
  exp: number;
  jti: string;
  scope: string;
  task: { id: string; hash: string };
  owner: string;
  policy: string;
}

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
  };
}

/** Signs access-token claims with ES256 under `typ: at+jwt` and the key's `kid`. */
export function signAccessToken(claims: AccessTokenClaims, signingKey: SigningKey): Promise<string> {
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: SIGNING_ALG, typ: ACCESS_TOKEN_TYP, kid: signingKey.kid })
    .sign(signingKey.key);
}
