/**
 * How many cases a fuzz property runs, and from which seed: a small number from one fixed seed in `npm test`
 * (the same cases every time), or what `npm run fuzz -- --runs N [--seed S]` asked for (vitest.config.ts
 * hands it over with `provide`).
 */
import type fc from 'fast-check';
import { inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `npm run fuzz`'s `--runs` and `--seed`, or null (vitest.config.ts). */
    fuzz: { runs: number | null; seed: number | null };
  }
}

/** The seed of `npm test`: fixed, so a failure there is the same failure on every machine. */
export const CI_SEED = 20_261_201;

const { runs, seed } = inject('fuzz');

/** True under `npm run fuzz`: properties run as many cases as asked, from a new seed unless one was given. */
export const longRun = runs !== null;

/** The cases a property that runs `ciRuns` in `npm test` runs now. */
export const fuzzRuns = (ciRuns: number): number => runs ?? ciRuns;

/**
 * fast-check parameters for a property that runs `ciRuns` cases of about `msPerCase` each in `npm test`. Under
 * `npm run fuzz` it runs `--runs` cases instead, and fast-check's failure report names the seed and path to
 * replay it with. The property stops 20 s before its test's timeout ({@link fuzzTimeout}): a failure still
 * shrinking then is reported with the smallest case found so far, not as a timeout, and runs left undone
 * fail it.
 */
export function fuzzParameters<T>(ciRuns: number, msPerCase: number): fc.Parameters<T> {
  return {
    numRuns: fuzzRuns(ciRuns),
    seed: seed ?? (longRun ? Math.floor(Math.random() * 0x7fff_ffff) : CI_SEED),
    interruptAfterTimeLimit: fuzzTimeout(ciRuns, msPerCase) - 20_000,
    markInterruptAsFailure: true,
  };
}

/**
 * The test timeout of a property that runs `ciRuns` cases of about `msPerCase` each: generous in `npm test`
 * (a loaded machine), and scaled to the number of runs under `npm run fuzz`.
 */
export function fuzzTimeout(ciRuns: number, msPerCase: number): number {
  return Math.max(60_000, fuzzRuns(ciRuns) * msPerCase * 10);
}
