/**
 * One target under load, as every target gets it: primed if asked, warmed up, then run, with the same
 * connections and the same time, on a pool of request bodies signed ahead and each sent once.
 */
import { measureContention } from './contention';
import type { BodyMaker } from './fixtures';
import { type LoadResult, type LoadSettings, type RequestPool, runLoad } from './load';
import type { Figures, TargetFigures } from './results';

/** The load every target gets: the same connections, the same time (12 s: six targets stay within 4 minutes on 2 busy cores). */
export const LOAD: LoadSettings = { connections: 10, seconds: 12 };
/** Before each measured run: JIT, caches, Durable Objects and keys warmed up, on the same pool. */
export const WARMUP: LoadSettings = { connections: LOAD.connections, seconds: 3 };
/** Bodies signed for a warm-up: about what the fastest target sends in WARMUP.seconds on a small machine (a
 * warm-up that runs out ends early). */
export const WARMUP_BODIES = 10_000;
/** The run's pool is sized from the warm-up's rate, with this much room for the run to go faster. */
const POOL_HEADROOM = 2;
/** Never sign more than this many bodies for one run (bounds memory and signing time). */
const MAX_RUN_BODIES = 300_000;
/** The wake-up right before the run (one request per connection) gives up after this long. */
const WAKE_DEADLINE_SECONDS = 10;
/** Priming (one request per agent before the warm-up) gives up after this long. */
const PRIME_DEADLINE_SECONDS = 120;
export const FORM = 'application/x-www-form-urlencoded';

const started = performance.now();

/** Seconds since the benchmark started. */
export function elapsedSeconds(): number {
  return (performance.now() - started) / 1000;
}

/** Logs `message` with the time since the benchmark started. */
export const log = (message: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${message}`);

/** Adds bodies to `pool` until `count` are unused. */
async function topUp(pool: RequestPool, count: number, make: BodyMaker): Promise<void> {
  const missing = count - (pool.bodies.length - pool.next);
  if (missing > 0) pool.bodies.push(...(await make(missing)));
}

/** A run's figures without its token ids. */
function figures({ tokenIds: _ids, ...rest }: LoadResult): Figures {
  return rest;
}

interface Measured {
  figures: TargetFigures;
  /** The `jti` of every token before the run (priming, warm-up and wake-up), and of the run. */
  warmupTokenIds: string[];
  runTokenIds: string[];
}

interface MeasureOptions {
  /** Requests sent before the warm-up, one per agent when the pool takes agents in turn. */
  prime?: number;
  /** Runs between the warm-up and the run, off the clock. */
  beforeRun?: () => Promise<void>;
}

/**
 * Primes `url` if asked, warms it up, sizes the pool for the run from the warm-up's rate, then runs. All
 * consume the pool.
 */
export async function measure(
  name: string,
  url: string,
  pool: RequestPool,
  make: BodyMaker,
  options: MeasureOptions = {},
): Promise<Measured> {
  let prime: LoadResult | undefined;
  if (options.prime !== undefined) {
    await topUp(pool, options.prime, make);
    log(`${name}: priming, ${options.prime} requests`);
    prime = await runLoad(url, pool, { ...WARMUP, seconds: PRIME_DEADLINE_SECONDS, requests: options.prime });
    log(`${name}: primed, ${prime.tokensPerSecond.toFixed(0)} tokens/s, p99 ${prime.latency.p99.toFixed(1)} ms`);
  }
  await topUp(pool, WARMUP_BODIES, make);
  log(`${name}: warm-up, ${WARMUP.seconds} s`);
  const warmup = await runLoad(url, pool, WARMUP);
  const rate = warmup.requests / warmup.elapsed;
  await topUp(pool, Math.min(MAX_RUN_BODIES, Math.ceil(rate * LOAD.seconds * POOL_HEADROOM) + LOAD.connections), make);
  await options.beforeRun?.();
  // The pause since the warm-up (signing the run's bodies, beforeRun) is a quiet spell no steady load has:
  // one request per connection, not counted, wakes the target as that load would keep it (for Tessera, the
  // isolate's kill switch lease is renewed by the first, and then in the background).
  const wake = await runLoad(url, pool, { ...LOAD, seconds: WAKE_DEADLINE_SECONDS, requests: LOAD.connections });
  log(`${name}: ${LOAD.seconds} s, ${LOAD.connections} connections (${pool.bodies.length - pool.next} bodies ready)`);
  const contention = measureContention();
  const run = await runLoad(url, pool, LOAD);
  const taken = contention();
  log(`${name}: ${run.tokensPerSecond.toFixed(0)} tokens/s, p99 ${run.latency.p99.toFixed(1)} ms`);
  if (run.tokens === 0) throw new Error(`${name} issued no token: ${JSON.stringify(figures(run))}`);
  return {
    figures: {
      ...(prime !== undefined && { prime: figures(prime) }),
      warmup: figures(warmup),
      wake: figures(wake),
      run: figures(run),
      ...(taken !== undefined && { contention: taken }),
    },
    warmupTokenIds: [...(prime?.tokenIds ?? []), ...warmup.tokenIds, ...wake.tokenIds],
    runTokenIds: run.tokenIds,
  };
}
