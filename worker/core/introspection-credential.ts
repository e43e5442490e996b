/**
 * APIs' introspection credentials (RFC 7662 §2.1): an API authenticates to `POST /introspect` with HTTP Basic
 * (RFC 6749 §2.3.1), its audience as the client id and `tessera_introspection.<secret>` as the password.
 * Only the hex SHA-256 of `<secret>` is stored, per audience, in `policies/apis.yaml`.
 */
import { newSecret, SECRET_PATTERN } from './credential-secret';

const PREFIX = 'tessera_introspection';
const CREDENTIAL = new RegExp(`^tessera_introspection\\.(${SECRET_PATTERN})$`);

/** A new introspection credential (32 random bytes of secret) and the hash to store for it. */
export async function newIntrospectionCredential(): Promise<{ credential: string; secretSha256: string }> {
  const { secret, secretSha256 } = await newSecret();
  return { credential: `${PREFIX}.${secret}`, secretSha256 };
}

/** The secret of a presented introspection credential, or undefined if it is not one. */
export function introspectionSecret(presented: string): string | undefined {
  return CREDENTIAL.exec(presented)?.[1];
}

/** `Authorization: Basic` for an API: its audience and credential, each form-encoded (RFC 6749 §2.3.1). */
export function basicAuthorization(clientId: string, password: string): string {
  return `Basic ${btoa(`${encodeURIComponent(clientId)}:${encodeURIComponent(password)}`)}`;
}

/** Form decoding (`+` is a space), or undefined for a `%` escape that is no UTF-8. */
function formDecoded(value: string): string | undefined {
  try {
    return decodeURIComponent(value.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

/**
 * The client id and password of `Authorization: Basic ...` (RFC 7617), each form-decoded as RFC 6749
 * §2.3.1 has clients encode them; undefined when the header is not one. The password is what follows the
 * last colon: a credential has none, and so an audience sent without encoding (`https://...`) reads the same.
 */
export function basicCredentials(header: string | null): { clientId: string; password: string } | undefined {
  const match = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header ?? '');
  if (match?.[1] === undefined) return undefined;
  let decoded: string;
  try {
    // Form encoding is ASCII: a byte outside it is left as its Latin-1 character, and matches no audience.
    decoded = atob(match[1]);
  } catch {
    return undefined;
  }
  const colon = decoded.lastIndexOf(':');
  if (colon < 0) return undefined;
  const clientId = formDecoded(decoded.slice(0, colon));
  const password = formDecoded(decoded.slice(colon + 1));
  if (clientId === undefined || password === undefined) return undefined;
  return { clientId, password };
}
