/**
 * The trusted issuers of `policies/issuers.yaml` as the agent tests stand in for them: their URLs and
 * `jwks_uri`s (which the global setup answers with keys of its own), and tokens they would issue.
 */
import { importJWK, type JWK, SignJWT } from 'jose';

export const ISSUERS = {
  github: {
    issuer: 'https://token.actions.githubusercontent.com',
    jwksUri: 'https://token.actions.githubusercontent.com/.well-known/jwks',
    alg: 'RS256',
  },
  kubernetes: {
    issuer: 'https://kubernetes.default.svc.cluster.local',
    jwksUri: 'https://oidc.k8s.acme.example/openid/v1/jwks',
    alg: 'ES256',
  },
  spire: { issuer: 'https://spire.acme.example', jwksUri: 'https://spire.acme.example/keys', alg: 'ES256' },
} as const;

export type IssuerName = keyof typeof ISSUERS;

/** A token of the stand-in `issuer` for `subject`, for the broker at `audience`, valid ten minutes from now. */
export async function issuerToken(
  key: JWK,
  issuer: IssuerName,
  claims: { sub: string; aud: string } & Record<string, unknown>,
): Promise<string> {
  const { alg } = ISSUERS[issuer];
  return new SignJWT(claims)
    .setProtectedHeader({ alg, kid: key.kid as string, typ: 'JWT' })
    .setIssuer(ISSUERS[issuer].issuer)
    .setIssuedAt()
    .setExpirationTime('10m')
    .setJti(crypto.randomUUID())
    .sign(await importJWK(key, alg));
}
