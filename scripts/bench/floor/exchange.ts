/**
 * What both floors do with a request: read the same body as Tessera's `/token`, verify its attestation
 * (ES256, with the same claim checks) and sign one ES256 access token. Keys are made on the first request
 * (Workers do not allow key generation at start-up), then reused like a broker's.
 */
import { type CryptoKey, generateKeyPair, importJWK, type JWK, jwtVerify, SignJWT } from 'jose';

/** The bindings both floors read. */
export interface FloorEnv {
  /** The agent's public JWK (JSON) that signs the attestations. */
  ATTESTATION_KEY: string;
  /** The `aud` every attestation names (the broker's issuer), and the `iss` of the tokens. */
  ISSUER: string;
}

/** A verified exchange request: who asked, for what, and the attestation's single-use id. */
export interface Exchange {
  agent: string;
  audience: string;
  scope: string;
  jti: string;
  /** Epoch seconds after which the attestation is refused anyway: its replay mark may go then. */
  exp: number;
}

interface Keys {
  attestation: CryptoKey;
  signing: CryptoKey;
}

let keys: Promise<Keys> | undefined;

async function makeKeys(env: FloorEnv): Promise<Keys> {
  const attestation = (await importJWK(JSON.parse(env.ATTESTATION_KEY) as JWK, 'ES256')) as CryptoKey;
  const { privateKey } = await generateKeyPair('ES256');
  return { attestation, signing: privateKey };
}

/** An OAuth error answer, as the broker gives it. */
export function refusal(error: string, status = 400): Response {
  return Response.json({ error }, { status, headers: { 'cache-control': 'no-store' } });
}

/** Reads and verifies the request, or answers why not. */
export async function verifyExchange(request: Request, env: FloorEnv): Promise<Exchange | Response> {
  keys ??= makeKeys(env);
  const { attestation } = await keys;
  const fields = new URLSearchParams(await request.text());
  const subjectToken = fields.get('subject_token');
  const audience = fields.get('audience');
  const scope = fields.get('scope');
  if (subjectToken === null || audience === null || scope === null) return refusal('invalid_request');
  try {
    const { payload } = await jwtVerify(subjectToken, attestation, {
      algorithms: ['ES256'],
      audience: env.ISSUER,
      maxTokenAge: 300,
      clockTolerance: 30,
      requiredClaims: ['exp', 'iat', 'jti', 'sub'],
    });
    return { agent: String(payload.sub), audience, scope, jti: String(payload.jti), exp: Number(payload.exp) };
  } catch {
    return refusal('invalid_grant');
  }
}

/** Signs the access token for a verified exchange and answers with it. */
export async function issueToken(exchange: Exchange, env: FloorEnv): Promise<Response> {
  keys ??= makeKeys(env);
  const { signing } = await keys;
  const now = Math.floor(Date.now() / 1000);
  const accessToken = await new SignJWT({ client_id: exchange.agent, scope: exchange.scope })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'floor' })
    .setIssuer(env.ISSUER)
    .setSubject(exchange.agent)
    .setAudience(exchange.audience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + 300)
    .setJti(crypto.randomUUID())
    .sign(signing);
  return Response.json(
    { access_token: accessToken, token_type: 'Bearer', expires_in: 300, scope: exchange.scope },
    { headers: { 'cache-control': 'no-store' } },
  );
}
