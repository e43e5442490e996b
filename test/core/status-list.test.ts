/**
 * The broker's status list codec (draft-ietf-oauth-status-list §4): the draft's own examples as fixed
 * vectors, round-trips of any status array at every `bits`, the size of a list at Tessera's scale, and the
 * claims of a status list token and of a token that names one.
 */
import { VerifyError } from '@tessera/verify';
import fc from 'fast-check';
import { base64url } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  decodeStatusList,
  encodeStatusList,
  referencedTokenStatus,
  STATUS,
  type StatusBits,
  statusListTokenClaims,
  TESSERA_STATUS_BITS,
} from '../../worker/core/status-list';

/** The draft's examples (§4.1 and §4.2): the statuses, and the `lst` the draft gives for them. */
const DRAFT_EXAMPLES = [
  { bits: 1, statuses: [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1], bytes: [0xb9, 0xa3], lst: 'eNrbuRgAAhcBXQ' },
  { bits: 2, statuses: [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3], bytes: [0xc9, 0x44, 0xf9], lst: 'eNo76fITAAPfAgc' },
] as const;

/** The uncompressed bytes of an `lst`, read with the platform's inflater: what the codec packed. */
async function packedBytes(lst: string): Promise<number[]> {
  const inflated = new Blob([base64url.decode(lst) as Uint8Array<ArrayBuffer>])
    .stream()
    .pipeThrough(new DecompressionStream('deflate'));
  return [...new Uint8Array(await new Response(inflated).arrayBuffer())];
}

/** A deterministic pseudo-random sequence (mulberry32), so that the size measured is the same every run. */
function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** `size` entries, `share` of them INVALID at random positions, the rest VALID. */
function listWithInvalid(size: number, share: number): Uint8Array {
  const random = seeded(20);
  const statuses = new Uint8Array(size);
  let invalid = 0;
  while (invalid < size * share) {
    const index = Math.floor(random() * size);
    if (statuses[index] === STATUS.VALID) {
      statuses[index] = STATUS.INVALID;
      invalid += 1;
    }
  }
  return statuses;
}

describe('the draft examples (§4.1, §4.2)', () => {
  for (const example of DRAFT_EXAMPLES) {
    it(`decodes the draft's ${example.bits}-bit lst to its statuses`, async () => {
      const statuses = await decodeStatusList({ bits: example.bits, lst: example.lst });
      expect([...statuses.slice(0, example.statuses.length)]).toEqual(example.statuses);
      expect([...statuses.slice(example.statuses.length)].every((status) => status === 0)).toBe(true);
    });

    it(`packs the draft's ${example.bits}-bit statuses into its bytes, least significant bit first`, async () => {
      const list = await encodeStatusList(Uint8Array.from(example.statuses), example.bits);
      expect(list.bits).toBe(example.bits);
      expect(await packedBytes(list.lst)).toEqual(example.bytes);
    });
  }

  it('compresses with ZLIB (RFC 1950): a zlib header, not raw DEFLATE or gzip', async () => {
    const { lst } = await encodeStatusList(Uint8Array.of(1, 0, 1), 1);
    const [cmf, flg] = base64url.decode(lst);
    expect((cmf as number) & 0x0f).toBe(8);
    expect(((cmf as number) * 256 + (flg as number)) % 31).toBe(0);
  });
});

describe('round trips', () => {
  const bitsArbitrary = fc.constantFrom<StatusBits>(1, 2, 4, 8);
  const listArbitrary = bitsArbitrary.chain((bits) =>
    fc.record({ bits: fc.constant(bits), statuses: fc.uint8Array({ max: 2 ** bits - 1, maxLength: 300 }) }),
  );

  it('decodes what it encodes, at every bits, the last byte padded with VALID', async () => {
    await fc.assert(
      fc.asyncProperty(listArbitrary, async ({ bits, statuses }) => {
        const decoded = await decodeStatusList(await encodeStatusList(statuses, bits));
        expect(decoded.length).toBe(Math.ceil((statuses.length * bits) / 8) * (8 / bits));
        expect(decoded.slice(0, statuses.length)).toEqual(statuses);
        expect(decoded.slice(statuses.length).every((status) => status === STATUS.VALID)).toBe(true);
      }),
    );
  });

  it('refuses a status wider than its bits, and bits the draft does not allow', async () => {
    await expect(encodeStatusList(Uint8Array.of(0, 4), 2)).rejects.toThrow(TypeError);
    await expect(encodeStatusList(Uint8Array.of(0), 3 as StatusBits)).rejects.toThrow(TypeError);
  });

  it('refuses an lst that is not ZLIB data, or inflates beyond the bound', async () => {
    const notZlib = await decodeStatusList({ bits: 1, lst: base64url.encode('not zlib') }).catch((error) => error);
    expect(notZlib).toBeInstanceOf(VerifyError);
    expect(notZlib.code).toBe('status_unavailable');
    const big = await encodeStatusList(new Uint8Array(80_000), 1);
    const bomb = await decodeStatusList(big, 1_000).catch((error) => error);
    expect(bomb).toBeInstanceOf(VerifyError);
    expect(bomb.code).toBe('status_unavailable');
  });
});

describe("a list at Tessera's scale", () => {
  // 300,000 entries at 2 bits pack into 75,000 bytes; ZLIB keeps little more than the 3,000 INVALID entries
  // and the gaps between them (about 5.2 KB measured), so 4 bytes per INVALID entry is a generous bound.
  it('compresses 300,000 entries at 2 bits with 1 % INVALID into under 4 bytes per INVALID entry', async () => {
    const statuses = listWithInvalid(300_000, 0.01);
    const list = await encodeStatusList(statuses, TESSERA_STATUS_BITS);
    expect(base64url.decode(list.lst).length).toBeLessThan(3_000 * 4);
    expect((await decodeStatusList(list)).slice(0, statuses.length)).toEqual(statuses);
  });
});

describe('claims (§5.1, §6.1)', () => {
  const list = { bits: 2, lst: 'eNo76fITAAPfAgc' } as const;

  it('builds the claims of a status list token', () => {
    const claims = statusListTokenClaims({
      sub: 'https://tessera.example/status/1',
      iat: 100,
      exp: 400,
      ttl: 60,
      list,
    });
    expect(claims).toEqual({
      sub: 'https://tessera.example/status/1',
      iat: 100,
      exp: 400,
      ttl: 60,
      status_list: list,
    });
  });

  it('refuses a sub that is not a URI, an exp not after iat, a ttl that is not positive', () => {
    const valid = { sub: 'https://tessera.example/status/1', iat: 100, exp: 400, ttl: 60, list };
    expect(() => statusListTokenClaims({ ...valid, sub: 'status/1' })).toThrow(TypeError);
    expect(() => statusListTokenClaims({ ...valid, exp: 100 })).toThrow(TypeError);
    expect(() => statusListTokenClaims({ ...valid, ttl: 0 })).toThrow(TypeError);
  });

  it("builds a token's status claim, and refuses a negative idx or a relative uri", () => {
    expect(referencedTokenStatus(7, 'https://tessera.example/status/1')).toEqual({
      status_list: { idx: 7, uri: 'https://tessera.example/status/1' },
    });
    expect(() => referencedTokenStatus(-1, 'https://tessera.example/status/1')).toThrow(TypeError);
    expect(() => referencedTokenStatus(1.5, 'https://tessera.example/status/1')).toThrow(TypeError);
    expect(() => referencedTokenStatus(0, '/status/1')).toThrow(TypeError);
  });
});
