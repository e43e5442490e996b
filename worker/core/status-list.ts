/**
 * The broker's side of the Token Status List (draft-ietf-oauth-status-list): the `status_list` claim encoded
 * from a status array, the claims of a status list token, and the `status` claim of a token it names. Pure:
 * no I/O, no clock; decoding is the verifier's (`@tessera/verify`), re-exported here.
 */
import { isStatusBits, type StatusBits, type StatusListClaim, type StatusReference } from '@tessera/verify';
import { base64url } from 'jose';

export { decodeStatusList, STATUS, type StatusBits, type StatusListClaim, type StatusName } from '@tessera/verify';

/** Tessera's lists: 2 bits an entry, for VALID, INVALID and SUSPENDED (§4.1). */
export const TESSERA_STATUS_BITS: StatusBits = 2;
/** Entries a list of Tessera's holds at most (a generation): 2^20 × 2 bits = 256 KiB uncompressed when full. */
export const LIST_CAPACITY = 2 ** 20;

/** The `typ` header of a status list token (§5.1); it is served as `application/statuslist+jwt` (§8.1). */
export const STATUS_LIST_TYP = 'statuslist+jwt';

async function deflate(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const compressed = new Blob([bytes]).stream().pipeThrough(new CompressionStream('deflate'));
  return new Uint8Array(await new Response(compressed).arrayBuffer());
}

/**
 * The `status_list` claim (§4.2) of `statuses`, entry `i` the status of the token whose `idx` is `i`:
 * `bits` bits an entry, least significant first in each byte (§4.1), ZLIB-compressed (RFC 1950), base64url.
 *
 * @example
 * const list = await encodeStatusList(Uint8Array.of(STATUS.VALID, STATUS.INVALID, STATUS.SUSPENDED), 2);
 * // { bits: 2, lst: 'eJz...' }, whose first byte before compression is 0b00_10_01_00
 *
 * @throws {TypeError} when `bits` is not 1, 2, 4 or 8, or a status does not fit in `bits`.
 */
export async function encodeStatusList(statuses: Uint8Array, bits: StatusBits): Promise<StatusListClaim> {
  if (!isStatusBits(bits)) throw new TypeError(`status list bits must be 1, 2, 4 or 8, not ${String(bits)}`);
  const perByte = 8 / bits;
  const bytes = new Uint8Array(Math.ceil(statuses.length / perByte));
  statuses.forEach((status, index) => {
    if (status >> bits !== 0) throw new TypeError(`status ${status} at ${index} does not fit in ${bits} bits`);
    const byte = Math.floor(index / perByte);
    bytes[byte] = (bytes[byte] as number) | (status << ((index % perByte) * bits));
  });
  return { bits, lst: base64url.encode(await deflate(bytes)) };
}

/** The claims of a status list token (§5.1): what the broker signs with `typ: statuslist+jwt`. */
export interface StatusListTokenClaims {
  /** The URI the list is served at, which every token on it names. */
  sub: string;
  iat: number;
  exp: number;
  /** Seconds a verifier may use the list before fetching it again. */
  ttl: number;
  status_list: StatusListClaim;
}

/**
 * The claims of the status list token served at `sub` (§5.1), times in epoch seconds.
 *
 * @throws {TypeError} when `sub` is not an absolute URL, `exp` is not after `iat`, or `ttl` is not a
 *   positive whole number of seconds.
 */
export function statusListTokenClaims(input: {
  sub: string;
  iat: number;
  exp: number;
  ttl: number;
  list: StatusListClaim;
}): StatusListTokenClaims {
  const { sub, iat, exp, ttl, list } = input;
  if (!URL.canParse(sub)) throw new TypeError(`a status list's sub is its URI, not ${sub}`);
  if (!Number.isInteger(iat) || !Number.isInteger(exp) || exp <= iat)
    throw new TypeError('a status list needs whole-second iat and exp, exp after iat');
  if (!Number.isInteger(ttl) || ttl <= 0) throw new TypeError('a status list ttl is a positive whole number');
  return { sub, iat, exp, ttl, status_list: { bits: list.bits, lst: list.lst } };
}

/**
 * The `status` claim (§6.1) of a token whose status is entry `idx` of the list at `uri`.
 *
 * @throws {TypeError} when `idx` is not a non-negative integer or `uri` is not an absolute URL.
 */
export function referencedTokenStatus(idx: number, uri: string): StatusReference {
  if (!Number.isSafeInteger(idx) || idx < 0) throw new TypeError(`a status list index is a whole number, not ${idx}`);
  if (!URL.canParse(uri)) throw new TypeError(`a status list URI is an absolute URL, not ${uri}`);
  return { status_list: { idx, uri } };
}
