/**
 * The Token Status List's array (draft-ietf-oauth-status-list §4): status values, `bits` per entry packed
 * least significant bit first, ZLIB-compressed and base64url-encoded as the `status_list` claim's `lst`.
 */
import { base64url } from 'jose';
import { VerifyError } from './errors.js';

/** The status values the draft registers (§7.1); 0x03 and 0x0C–0x0F are application-specific. */
export const STATUS = { VALID: 0x00, INVALID: 0x01, SUSPENDED: 0x02 } as const;
/** The name of a registered status value. */
export type StatusName = keyof typeof STATUS;

/** Bits per entry the draft allows (§4.1). */
export const STATUS_BITS = [1, 2, 4, 8] as const;
/** One of {@link STATUS_BITS}. */
export type StatusBits = (typeof STATUS_BITS)[number];

/** The `status_list` claim of a status list token (§4.2). */
export interface StatusListClaim {
  bits: StatusBits;
  /** base64url of the ZLIB (RFC 1950) compressed, packed status array. */
  lst: string;
}

/** The most bytes a list may inflate to: 2^27 one-bit entries, far beyond any Tessera list, against a zip bomb. */
export const MAX_STATUS_LIST_BYTES = 16 * 1024 * 1024;

/** Whether `value` is one of the `bits` the draft allows. */
export const isStatusBits = (value: unknown): value is StatusBits => STATUS_BITS.some((bits) => bits === value);

async function inflate(compressed: Uint8Array, maxBytes: number): Promise<Uint8Array> {
  const reader = new Blob([compressed as Uint8Array<ArrayBuffer>])
    .stream()
    .pipeThrough(new DecompressionStream('deflate'))
    .getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    length += read.value.byteLength;
    if (length > maxBytes) {
      await reader.cancel();
      throw new VerifyError('status_unavailable', `the status list inflates beyond ${maxBytes} bytes`);
    }
    chunks.push(read.value);
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/**
 * The statuses of a `status_list` claim, one per entry (§4.1): index `i` is the token whose `idx` is `i`.
 * The last byte's unused entries read as 0 (VALID), so the result's length is a multiple of `8 / bits`.
 *
 * @example
 * const statuses = await decodeStatusList({ bits: 1, lst: 'eNrbuRgAAhcBXQ' });
 * statuses[0] === STATUS.INVALID; // true: the draft's 1-bit example
 *
 * @throws {VerifyError} `status_unavailable` when `bits` is not 1, 2, 4 or 8, or `lst` is not base64url of
 *   ZLIB data inflating to at most `maxBytes`.
 */
export async function decodeStatusList(
  list: StatusListClaim,
  maxBytes: number = MAX_STATUS_LIST_BYTES,
): Promise<Uint8Array> {
  if (!isStatusBits(list.bits)) throw new VerifyError('status_unavailable', `status list bits ${String(list.bits)}`);
  let bytes: Uint8Array;
  try {
    bytes = await inflate(base64url.decode(list.lst), maxBytes);
  } catch (error) {
    if (error instanceof VerifyError) throw error;
    throw new VerifyError('status_unavailable', `the status list's lst does not decode: ${String(error)}`, {
      cause: error,
    });
  }
  const perByte = 8 / list.bits;
  const mask = (1 << list.bits) - 1;
  const statuses = new Uint8Array(bytes.length * perByte);
  for (let index = 0; index < statuses.length; index += 1) {
    const byte = bytes[Math.floor(index / perByte)] as number;
    statuses[index] = (byte >> ((index % perByte) * list.bits)) & mask;
  }
  return statuses;
}
