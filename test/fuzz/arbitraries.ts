/**
 * Generators shared by the fuzz properties: strings at the edges of Unicode and of the schemas (lone
 * surrogates, NUL, controls, prototype names, the longest and one past it), JSON values of the wrong type,
 * header values (what `Headers` can carry), and mostly-valid values with a chance of junk.
 */
import fc from 'fast-check';

/** Names an object inherits: an untrusted key that indexes a plain object finds these. */
export const PROTOTYPE_NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype'];

/** Any single UTF-16 code unit, lone surrogates included. */
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit));

/** A lone surrogate, high or low, somewhere in otherwise plain text. */
export const loneSurrogate = fc
  .tuple(
    fc.string({ maxLength: 8 }),
    fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit)),
    fc.string({ maxLength: 8 }),
  )
  .map(([before, lone, after]) => `${before}${lone}${after}`);

/** Text at the edges: what schemas, Cedar, D1, the audit log and error descriptions must all survive. */
export const edgeString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: codeUnit, maxLength: 40 }),
  loneSurrogate,
  fc.constantFrom(
    '',
    ' ',
    '\t',
    '\u0000',
    'a\u0000b',
    '\r\n',
    '"\\',
    '\u202e',
    '\ufeff',
    '\u00a0',
    '\u2028',
    '😀',
    'é',
    'e\u0301',
    '%00',
    '%ZZ',
    '../../etc/passwd',
    '{}',
    '[]',
    'null',
    '<script>',
    "' OR 1=1 --",
    ...PROTOTYPE_NAMES,
  ),
  fc.constantFrom(512, 513, 4096, 4097, 16_385).map((length) => 'x'.repeat(length)),
);

/** A JSON value of the wrong type for a string field (or any field). */
export const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(
    fc.oneof(fc.string({ maxLength: 5 }), fc.constantFrom(...PROTOTYPE_NAMES)),
    fc.string({ maxLength: 5 }),
    {
      maxKeys: 3,
    },
  ),
  fc.constant({ nested: { deeper: { deepest: [1, [2, [3]]] } } }),
);

/** Anything a field could be sent as: edge text or a wrong type. */
export const junk: fc.Arbitrary<unknown> = fc.oneof(edgeString, wrongType);

/** Undefined stands for a field left out. */
export const ABSENT = undefined;

/**
 * A field that is `valid` most of the time, and otherwise left out or junk: over several fields, about half
 * the requests are valid and the rest are wrong in one or more ways.
 */
export function mostly<T>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<unknown> = junk): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 40, arbitrary: valid },
    { weight: 1, arbitrary: fc.constant(ABSENT) },
    { weight: 1, arbitrary: invalid },
  );
}

/** A header value `Headers` accepts (no CR, LF or NUL; Latin-1), possibly junk to the broker. */
export const headerValue: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary-ascii', maxLength: 40 }).map((value) => value.replace(/[\r\n\0]/g, '').trim()),
  fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((unit) => String.fromCharCode(unit)), maxLength: 20 }),
  fc.constantFrom('', ' ', 'x'.repeat(8192)),
);

/** Content types: the two the spec accepts in several spellings, and others. */
export const contentType = (valid: string): fc.Arbitrary<string | undefined> =>
  fc.oneof(
    { weight: 40, arbitrary: fc.constant(valid) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        `${valid}; charset=utf-8`,
        valid.toUpperCase(),
        ` ${valid} ; foo=bar`,
        `${valid};charset="utf-8"`,
      ),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        'application/json',
        'application/x-www-form-urlencoded',
        'text/plain',
        'multipart/form-data; boundary=x',
        'application/jsonx',
        'application/json+x',
        'application/*',
        '*/*',
        '',
        ';',
        'application/json; charset=utf-16',
      ),
    },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: headerValue },
  );

/** An IP (or junk) in `cf-connecting-ip`: recorded in the audit log as the caller's origin. */
export const connectingIp: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 4, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.ipV4() },
  { weight: 1, arbitrary: fc.ipV6() },
  { weight: 1, arbitrary: headerValue },
);

/** The `Authorization` header: schemes the broker knows, schemes it does not, and junk. */
export const authorizationJunk: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('Bearer', 'Bearer ', 'Bearer  ', 'bearer x', 'DPoP', 'Basic dXNlcjpwYXNz', 'Negotiate', 'Bearer a b'),
  headerValue.map((value) => `Bearer ${value}`),
  headerValue.map((value) => `DPoP ${value}`),
  headerValue,
  fc.constantFrom(
    'Bearer tessera_admin.demo-admin.wrong',
    'Bearer tessera_admin.constructor.x',
    'Bearer tessera_admin.__proto__.x',
    'Bearer tessera_admin..',
    'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
  ),
);

/**
 * Spellings of a compact JWS other than the one it was issued in, which a lenient base64url decoder reads as
 * the same bytes: padding, or a bit set past the data in the signature's last character (64 signature bytes
 * take 86 characters, whose last 4 bits carry nothing). The broker takes only the canonical spelling.
 */
export type Respelling = 'padded' | 'trailing_bits';

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export function respell(token: string, how: Respelling): string {
  if (how === 'padded') return `${token}=`;
  const last = BASE64URL.indexOf(token.at(-1) ?? 'A');
  return `${token.slice(0, -1)}${BASE64URL[last ^ 1]}`;
}

/** HTTP methods, the usual and the odd. */
export const method = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND');

/** A path segment: plausible ids, prototype names, encodings, and edge text, percent-encoded for the URL. */
export const pathSegment: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    ...PROTOTYPE_NAMES,
    'demo-agent',
    'release-bot',
    '%2e%2e',
    '%00',
    '%ZZ',
    '%ff',
    '%ED%A0%80',
    '%C0%AF',
    '..',
    '.',
    'a%2Fb',
    '',
  ),
  fc.uuid(),
  fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,20}$/),
  edgeString.map((text) => encodeURIComponent(text.toWellFormed())),
  fc.constant('x'.repeat(300)),
);
