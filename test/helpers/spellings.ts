/**
 * Other spellings of one JWT that jose's lenient base64url decoder reads as the same token: whitespace in
 * the signature segment, padding at its end, or a last character whose unused bits are set. None changes the
 * signed part (header and payload), so jose verifies each; every place that takes a token must refuse them.
 */

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** A spelling of a token other than the one its signer wrote, and whether it can travel in an HTTP header. */
export interface Spelling {
  name: string;
  token: string;
  /**
   * False for those HTTP itself changes or refuses in a header: leading and trailing whitespace is trimmed
   * from a field value (RFC 9110 §5.5), and a newline is not allowed in one.
   */
  fitsInHeader: boolean;
}

/** `token` with `text` inserted in the middle of its signature segment. */
function insideSignature(token: string, text: string): string {
  const start = token.lastIndexOf('.') + 1;
  const middle = start + Math.floor((token.length - start) / 2);
  return `${token.slice(0, middle)}${text}${token.slice(middle)}`;
}

/** `token` with the lowest unused bit of its last character set: the same bytes, another string. */
function withUnusedBitSet(token: string): string {
  const signature = token.slice(token.lastIndexOf('.') + 1);
  // 4n + 2 characters leave 4 unused bits in the last one, 4n + 3 leave 2; 4n leave none.
  if (signature.length % 4 === 0) throw new Error('this signature has no unused bits to set');
  const last = ALPHABET.indexOf(token.at(-1) ?? '');
  return `${token.slice(0, -1)}${ALPHABET[last ^ 1]}`;
}

/** The non-canonical spellings of `token` (a JWS whose signature length leaves unused bits, e.g. ES256). */
export function nonCanonicalSpellings(token: string): Spelling[] {
  return [
    { name: 'a trailing space', token: `${token} `, fitsInHeader: false },
    { name: 'a space inside the signature', token: insideSignature(token, ' '), fitsInHeader: true },
    { name: 'a tab inside the signature', token: insideSignature(token, '\t'), fitsInHeader: true },
    { name: 'a newline inside the signature', token: insideSignature(token, '\n'), fitsInHeader: false },
    { name: '== padding', token: `${token}==`, fitsInHeader: true },
    { name: 'an unused bit set in the last character', token: withUnusedBitSet(token), fitsInHeader: true },
  ];
}

/** Those of {@link nonCanonicalSpellings} that can be sent in a header. */
export function headerSpellings(token: string): Spelling[] {
  return nonCanonicalSpellings(token).filter((spelling) => spelling.fitsInHeader);
}
