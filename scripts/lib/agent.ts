/**
 * What an agent does to get a token: sign a fresh self-signed attestation and exchange it at `/token`.
 * Used by the CLI and the demo; an agent SDK would do the same.
 */
import { readFile } from 'node:fs/promises';
import { accessTokenHash } from '@tessera/verify';
import { type CryptoKey, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';

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
  /** Bind the token to this key with a DPoP proof (RFC 9449). */
  dpop?: DpopKey;
}

/** A DPoP key pair: the agent keeps the private key in memory for as long as it holds the token. */
export interface DpopKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/** A fresh ES256 DPoP key pair, as an agent makes one per process or per task. */
export async function newDpopKey(): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { privateKey, publicJwk: await exportJWK(publicKey) };
}

/**
 * A DPoP proof (RFC 9449 §4.2) for one request: `htm`, `htu`, a fresh `jti`, `iat` now; `ath` when it
 * accompanies an access token; the server's `nonce` when it asked for one.
 */
export async function dpopProof(
  key: DpopKey,
  request: { method: string; url: string; accessToken?: string; nonce?: string },
): Promise<string> {
  return new SignJWT({
    htm: request.method,
    htu: request.url,
    ...(request.accessToken !== undefined && { ath: await accessTokenHash(request.accessToken) }),
    ...(request.nonce !== undefined && { nonce: request.nonce }),
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.publicJwk })
    .setJti(crypto.randomUUID())
    .setIssuedAt()
    .sign(key.privateKey);
}

/**
 * Performs the RFC 8693 exchange; returns the HTTP status and the parsed JSON body. With a DPoP key, sends
 * a proof, and answers one `use_dpop_nonce` challenge with the nonce it names (RFC 9449 §8).
 */
export async function exchangeToken(
  broker: string,
  request: ExchangeRequest,
  nonce?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = `${broker}/token`;
  const proof = request.dpop && (await dpopProof(request.dpop, { method: 'POST', url, ...(nonce && { nonce }) }));
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(proof !== undefined && { dpop: proof }) },
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
  const body = (await response.json()) as Record<string, unknown>;
  const challenge = response.headers.get('dpop-nonce');
  if (body.error === 'use_dpop_nonce' && challenge !== null && nonce === undefined)
    return exchangeToken(broker, request, challenge);
  return { status: response.status, body };
}
