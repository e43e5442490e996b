/**
 * A second status list implementation, `@sd-jwt/jwt-status-list` (pako's ZLIB, its own bit packing), reads
 * the lists Tessera's codec writes, and Tessera's codec reads the ones it writes, at every `bits` the draft
 * allows (draft-ietf-oauth-status-list §4); it also reads a status list token built with Tessera's claims.
 */
import { getListFromStatusListJWT, StatusList } from '@sd-jwt/jwt-status-list';
import fc from 'fast-check';
import { generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  decodeStatusList,
  encodeStatusList,
  STATUS,
  STATUS_LIST_TYP,
  type StatusBits,
  statusListTokenClaims,
} from '../../worker/core/status-list';

const lists = fc.constantFrom<StatusBits>(1, 2, 4, 8).chain((bits) =>
  fc.record({
    bits: fc.constant(bits),
    statuses: fc.uint8Array({ max: 2 ** bits - 1, minLength: 1, maxLength: 500 }),
  }),
);

describe("@sd-jwt/jwt-status-list and Tessera read each other's lists", () => {
  it('reads every status of a list Tessera encoded', async () => {
    await fc.assert(
      fc.asyncProperty(lists, async ({ bits, statuses }) => {
        const { lst } = await encodeStatusList(statuses, bits);
        const theirs = StatusList.decompressStatusList(lst, bits);
        expect(statuses.every((status, index) => theirs.getStatus(index) === status)).toBe(true);
      }),
      { numRuns: 50 },
    );
  });

  it('Tessera reads every status of a list @sd-jwt/jwt-status-list encoded', async () => {
    await fc.assert(
      fc.asyncProperty(lists, async ({ bits, statuses }) => {
        const lst = new StatusList([...statuses], bits).compressStatusList();
        const ours = await decodeStatusList({ bits, lst });
        expect(ours.slice(0, statuses.length)).toEqual(statuses);
      }),
      { numRuns: 50 },
    );
  });

  it("reads a status list token built from Tessera's claims: VALID, INVALID, SUSPENDED at 2 bits", async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const statuses = Uint8Array.of(STATUS.VALID, STATUS.INVALID, STATUS.SUSPENDED, STATUS.VALID, STATUS.INVALID);
    const claims = statusListTokenClaims({
      sub: 'https://tessera.example/status/1',
      iat: 1_000,
      exp: 2_000,
      ttl: 300,
      list: await encodeStatusList(statuses, 2),
    });
    const jwt = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'ES256', typ: STATUS_LIST_TYP })
      .sign(privateKey);
    const theirs = getListFromStatusListJWT(jwt);
    expect(theirs.getBitsPerStatus()).toBe(2);
    expect([...statuses].map((_, index) => theirs.getStatus(index))).toEqual([...statuses]);
  });
});
