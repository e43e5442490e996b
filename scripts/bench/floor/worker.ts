/**
 * The benchmark's floor: a token endpoint doing only the cryptography no broker can skip. It reads the same
 * request body as Tessera's `/token`, verifies the attestation (ES256, with the same claim checks) and signs
 * one ES256 access token. No replay check, no state, no policy, no audit: what is left of Tessera's time
 * once these are taken away is what its guarantees cost.
 */
import { type CryptoKey, generateKeyPair, importJWK, type JWK, jwtVerify, SignJWT } from 'jose';

interface FloorEnv {
  /** The agent's public JWK (JSON) that signs the attestations. */
  ATTESTATION_KEY: string;
  /** The `aud` every attestation names (the broker's issuer), and the `iss` of the tokens. */
  ISSUER: string;
}

interface Keys {
  attestation: CryptoKey;
  signing: CryptoKey;
}

// Made on the first request (Workers do not allow key generation at start-up), then reused like a broker's.
let keys: Promise<Keys> | undefined;

async function makeKeys(env: FloorEnv): Promise<Keys> {
  const attestation = (await importJWK(JSON.parse(env.ATTESTATION_KEY) as JWK, 'ES256')) as CryptoKey;
  const { privateKey } = await generateKeyPair('ES256');
  return { attestation, signing: privateKey };
}

function refusal(error: string): Response {
  return Response.json({ error }, { status: 400, headers: { 'cache-control': 'no-store' } });
}

export default {
  async fetch(request: Request, env: FloorEnv): Promise<Response> {
    keys ??= makeKeys(env);
    const { attestation, signing } = await keys;
    const fields = new URLSearchParams(await request.text());
    const subjectToken = fields.get('subject_token');
    const audience = fields.get('audience');
    const scope = fields.get('scope');
    if (subjectToken === null || audience === null || scope === null) return refusal('invalid_request');
    let agent: string;
    try {
      const { payload } = await jwtVerify(subjectToken, attestation, {
        algorithms: ['ES256'],
        audience: env.ISSUER,
        maxTokenAge: 300,
        clockTolerance: 30,
        requiredClaims: ['exp', 'iat', 'jti'],
      });
      agent = String(payload.sub);
    } catch {
      return refusal('invalid_grant');
    }
    const now = Math.floor(Date.now() / 1000);
    const accessToken = await new SignJWT({ client_id: agent, scope })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'floor' })
      .setIssuer(env.ISSUER)
      .setSubject(agent)
      .setAudience(audience)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + 300)
      .setJti(crypto.randomUUID())
      .sign(signing);
    return Response.json(
      { access_token: accessToken, token_type: 'Bearer', expires_in: 300, scope },
      { headers: { 'cache-control': 'no-store' } },
    );
  },
};
