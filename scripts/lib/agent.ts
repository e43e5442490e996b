/**
 * What an agent does to get a token: sign a fresh self-signed attestation and exchange it at `/token`.
 * Used by the CLI and the demo; an agent SDK would do the same.
 */
import { readFile } from 'node:fs/promises';
import { importJWK, type JWK, SignJWT } from 'jose';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/** Reads a private JWK from a file (ignoring a `_comment` member). */
export async function readPrivateJwk(path: string): Promise<JWK> {
  const { _comment, ...jwk } = JSON.parse(await readFile(path, 'utf8')) as JWK & { _comment?: string };
  if (typeof jwk.d !== 'string' || typeof jwk.kid !== 'string')
    throw new Error(`${path}: not a private JWK with a kid`);
  return jwk;
}

/** A self-signed attestation: `iss` = `sub` = the agent, `aud` = the broker, single use, two minutes. */
export async function selfSignedAttestation(agent: string, jwk: JWK, broker: string, lifetime = 120): Promise<string> {
  const alg = jwk.alg ?? 'ES256';
  const key = await importJWK(jwk, alg);
  return new SignJWT({})
    .setProtectedHeader({ alg, kid: jwk.kid })
    .setIssuer(agent)
    .setSubject(agent)
    .setAudience(broker)
    .setIssuedAt()
    .setExpirationTime(`${lifetime}s`)
    .setJti(crypto.randomUUID())
    .sign(key);
}

export interface ExchangeRequest {
  attestation: string;
  audience: string;
  scope: string;
  task: { description: string; id?: string; justification?: string };
  requestedTtl?: number;
  /** Polling a step-up approval: the `approval_id` of an `authorization_pending` answer. */
  approvalId?: string;
}

/** Performs the RFC 8693 exchange; returns the HTTP status and the parsed JSON body. */
export async function exchangeToken(
  broker: string,
  request: ExchangeRequest,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${broker}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      grant_type: TOKEN_EXCHANGE,
      subject_token: request.attestation,
      subject_token_type: JWT_TOKEN_TYPE,
      audience: request.audience,
      scope: request.scope,
      task: request.task,
      ...(request.requestedTtl !== undefined && { requested_ttl: request.requestedTtl }),
      ...(request.approvalId !== undefined && { approval_id: request.approvalId }),
    }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
