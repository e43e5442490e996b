import type { ClaimMatch } from '../policy/bundle';

/** Compiles a glob where `*` matches any run of characters (including none); everything else is literal. */
function globToRegExp(glob: string): RegExp {
  const body = glob
    .split('*')
    .map((part) => part.replace(/[\\^$.|?+()[\]{}]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`, 's');
}

const compiled = new Map<string, RegExp>();

/** True when `value` satisfies `expected`: equal, or for a string containing `*`, matching it as a glob. */
export function claimMatches(expected: ClaimMatch, value: unknown): boolean {
  if (typeof expected !== 'string' || !expected.includes('*')) return value === expected;
  if (typeof value !== 'string') return false;
  let re = compiled.get(expected);
  if (re === undefined) {
    re = globToRegExp(expected);
    compiled.set(expected, re);
  }
  return re.test(value);
}

/** The names of the claims in `required` that `payload` does not satisfy. */
export function unmatchedClaims(
  required: Readonly<Record<string, ClaimMatch>>,
  payload: Record<string, unknown>,
): string[] {
  return (
    Object.entries(required)
      // The payload is the caller's: a claim it lacks is absent, not something inherited (`constructor`).
      .filter(([name, expected]) => !claimMatches(expected, Object.hasOwn(payload, name) ? payload[name] : undefined))
      .map(([name]) => name)
  );
}
