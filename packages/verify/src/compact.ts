/**
 * The one spelling of a JWT that Tessera accepts: the JWS compact serialization (RFC 7515 §7.1), three
 * segments of base64url without padding (RFC 7515 §2), each in its canonical encoding (RFC 4648 §3.5).
 *
 * jose's decoder is lenient: it skips whitespace and `=` padding, and ignores the unused low bits of a
 * segment's last character. The signature segment is not part of what is signed, so without this check one
 * token has many spellings that all verify (a trailing space, a tab inside, `==`, a different last
 * character): the broker and every verifier refuse all but the one the signer wrote.
 */

const BASE64URL = /^[A-Za-z0-9_-]*$/;
/** A last character whose 4 unused bits are zero: what ends a segment of 4n + 2 characters (one spare byte). */
const LAST_OF_TWO = /[AQgw]$/;
/** A last character whose 2 unused bits are zero: what ends a segment of 4n + 3 characters (two spare bytes). */
const LAST_OF_THREE = /[AEIMQUYcgkosw048]$/;

function isCanonicalBase64url(segment: string): boolean {
  if (!BASE64URL.test(segment)) return false;
  switch (segment.length % 4) {
    case 0:
      return true;
    case 2:
      return LAST_OF_TWO.test(segment);
    case 3:
      return LAST_OF_THREE.test(segment);
    default:
      // 4n + 1 characters encode no whole number of bytes.
      return false;
  }
}

/**
 * Whether `value` is a JWT in canonical compact form: exactly three dot-separated segments of the unpadded
 * base64url alphabet, with no whitespace anywhere and no unused bits set. It says nothing about what the
 * segments decode to: the signature and claims are checked after it.
 *
 * @example
 * isCanonicalJwt(token); // true for a token as the broker issued it
 * isCanonicalJwt(`${token} `); // false: a trailing space
 * isCanonicalJwt(`${token}==`); // false: padding
 */
export function isCanonicalJwt(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const segments = value.split('.');
  return segments.length === 3 && segments.every(isCanonicalBase64url);
}
