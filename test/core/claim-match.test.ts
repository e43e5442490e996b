import { describe, expect, it } from 'vitest';
import { claimMatches, unmatchedClaims } from '../../worker/core/claim-match';

describe('claimMatches', () => {
  describe('exact values', () => {
    it('matches an equal string', () => {
      expect(claimMatches('acme', 'acme')).toBe(true);
    });

    it('refuses a different string, including one differing only in case', () => {
      expect(claimMatches('acme', 'acme2')).toBe(false);
      expect(claimMatches('acme', 'ACME')).toBe(false);
    });

    it('matches numbers and booleans by value and type, without coercion', () => {
      expect(claimMatches(42, 42)).toBe(true);
      expect(claimMatches(42, '42')).toBe(false);
      expect(claimMatches(true, true)).toBe(true);
      expect(claimMatches(true, 'true')).toBe(false);
      expect(claimMatches(false, 0)).toBe(false);
    });

    it('refuses a missing claim', () => {
      expect(claimMatches('acme', undefined)).toBe(false);
    });

    it('does not look inside arrays', () => {
      expect(claimMatches('acme', ['acme'])).toBe(false);
    });
  });

  describe('globs', () => {
    it('lets * match any run of characters, at the end, the start or the middle', () => {
      expect(claimMatches('spiffe://acme.example/*', 'spiffe://acme.example/agents/scanner')).toBe(true);
      expect(claimMatches('*@refs/heads/main', 'acme/deployer/.github/workflows/release.yml@refs/heads/main')).toBe(
        true,
      );
      expect(claimMatches('repo:acme/*:ref:refs/heads/main', 'repo:acme/deployer:ref:refs/heads/main')).toBe(true);
    });

    it('lets * match an empty run', () => {
      expect(claimMatches('release.yml@*', 'release.yml@')).toBe(true);
      expect(claimMatches('*', '')).toBe(true);
    });

    it('supports several * in one pattern', () => {
      expect(claimMatches('repo:*/deployer:ref:*', 'repo:acme/deployer:ref:refs/tags/v1')).toBe(true);
      expect(claimMatches('repo:*/deployer:ref:*', 'repo:acme/builder:ref:refs/tags/v1')).toBe(false);
    });

    it('anchors the pattern at both ends', () => {
      expect(claimMatches('spiffe://acme.example/*', 'spiffe://evil.example/spiffe://acme.example/x')).toBe(false);
      expect(claimMatches('*@refs/heads/main', 'x@refs/heads/main-evil')).toBe(false);
    });

    it('treats every character other than * literally', () => {
      expect(claimMatches('acme.example/*', 'acmeXexample/a')).toBe(false);
      expect(claimMatches('a?b/*', 'ab/x')).toBe(false);
      expect(claimMatches('a?b/*', 'a?b/x')).toBe(true);
      expect(claimMatches('a+/*', 'aa/x')).toBe(false);
      expect(claimMatches('(a|b)/*', 'a/x')).toBe(false);
      expect(claimMatches('[ab]/*', '[ab]/x')).toBe(true);
      expect(claimMatches('^a$/*', '^a$/x')).toBe(true);
      expect(claimMatches('a\\d/*', 'a\\d/x')).toBe(true);
    });

    it('does not match a non-string value against a glob', () => {
      expect(claimMatches('*', 42)).toBe(false);
      expect(claimMatches('*', true)).toBe(false);
      expect(claimMatches('*', undefined)).toBe(false);
      expect(claimMatches('*', ['x'])).toBe(false);
    });

    it('gives the same answer when a compiled pattern is reused', () => {
      expect(claimMatches('cache/*', 'cache/a')).toBe(true);
      expect(claimMatches('cache/*', 'other/a')).toBe(false);
      expect(claimMatches('cache/*', 'cache/b')).toBe(true);
    });
  });
});

describe('unmatchedClaims', () => {
  const payload = { sub: 'spiffe://acme.example/agents/a', repository_owner: 'acme', run_attempt: 1 };

  it('returns nothing when every required claim is satisfied', () => {
    expect(
      unmatchedClaims({ sub: 'spiffe://acme.example/*', repository_owner: 'acme', run_attempt: 1 }, payload),
    ).toEqual([]);
  });

  it('returns nothing when nothing is required', () => {
    expect(unmatchedClaims({}, payload)).toEqual([]);
  });

  it('names every claim that does not match or is missing', () => {
    expect(
      unmatchedClaims(
        { sub: 'spiffe://other.example/*', repository_owner: 'acme', environment: 'prod', run_attempt: 2 },
        payload,
      ),
    ).toEqual(['sub', 'environment', 'run_attempt']);
  });
});
