import { describe, expect, it } from 'vitest';
import { clip, isWellFormedDeep } from '../../worker/core/well-formed';

describe('isWellFormedDeep', () => {
  it('finds a lone surrogate in a string, a member name or a nested value', () => {
    expect(isWellFormedDeep({ a: ['b', { c: 'd \ud83d\ude80' }], n: 1, x: null })).toBe(true);
    for (const value of ['\ud800', { a: '\udfff' }, { '\ud800': 1 }, [[[{ a: ['x\ud800y'] }]]]]) {
      expect(isWellFormedDeep(value)).toBe(false);
    }
  });

  it('walks a deeply nested value without exhausting the stack', () => {
    const deep = JSON.parse(`${'['.repeat(50_000)}"\\ud800"${']'.repeat(50_000)}`);
    expect(isWellFormedDeep(deep)).toBe(false);
  });
});

describe('clip', () => {
  it('cuts to the length, but not between the halves of a pair', () => {
    expect(clip('abcdef', 4)).toBe('abcd');
    expect(clip('abc', 4)).toBe('abc');
    expect(clip('abc\ud83d\ude80', 4)).toBe('abc');
    expect(clip('ab\ud83d\ude80', 4)).toBe('ab\ud83d\ude80');
  });
});
