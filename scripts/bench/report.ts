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
  autocannon: string;
}

/** A run's figures without the token ids (kept for the audit check only). */
export type Figures = Omit<LoadResult, 'tokenIds'>;

export interface TargetFigures {
  warmup: Figures;
  run: Figures;
  /** What the rest of the machine took during the run (Linux only). */
  contention?: Contention;
}

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

export interface Goal {
  goal: string;
  met: boolean;
  detail: string;
}

export interface BenchResults {
  date: string;
  machine: Machine;
  /** `storage`: where the broker's Durable Objects and D1 kept their SQLite files. */
  settings: { connections: number; seconds: number; warmupSeconds: number; storage: string };
  bundle: { uploadBytes: number; gzipBytes: number };
  coldStart: { readyMs: number; firstTokenMs: number };
  targets: { tessera: TargetFigures; peer: TargetFigures; floor: TargetFigures };
  ratios: { tokensPerSecondVsPeer: number; p99VsPeer: number; tokensPerSecondVsFloor: number };
  audit: AuditCheck;
  goals: Goal[];
  elapsedSeconds: number;
}

const require = createRequire(import.meta.url);

/** The version of an installed package, resolved as `from` resolves it. */
function packageVersion(name: string, from = require): string {
  return (JSON.parse(readFileSync(from.resolve(`${name}/package.json`), 'utf8')) as { version: string }).version;
}

/** The operating system's name (`PRETTY_NAME` on Linux) and kernel. */
function osName(): string {
  const osRelease = '/etc/os-release';
  const pretty = existsSync(osRelease)
    ? /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync(osRelease, 'utf8'))?.[1]
    : undefined;
  return `${pretty ?? type()} (${type()} ${release()})`;
}

/** The machine and the software the figures come from. */
export function machine(): Machine {
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
    autocannon: packageVersion('autocannon'),
  };
}

/** Whether each target of the issue is met, with the figures that decide it. */
export function goals(results: Omit<BenchResults, 'goals'>): Goal[] {
  const { tessera, peer } = results.targets;
  const non2xx = Object.values(tessera.run.non2xx).reduce((sum, n) => sum + n, 0);
  return [
    {
      goal: 'Tessera tokens/s ≥ the peer’s',
      met: results.ratios.tokensPerSecondVsPeer >= 1,
      detail: `${fixed(tessera.run.tokensPerSecond, 0)} vs ${fixed(peer.run.tokensPerSecond, 0)} (×${fixed(results.ratios.tokensPerSecondVsPeer, 2)})`,
    },
    {
      goal: 'Tessera p99 ≤ 1.5 × the peer’s',
      met: results.ratios.p99VsPeer <= 1.5,
      detail: `${fixed(tessera.run.latency.p99, 1)} ms vs ${fixed(peer.run.latency.p99, 1)} ms (×${fixed(results.ratios.p99VsPeer, 2)})`,
    },
    {
      goal: 'Tessera: zero errors and non-2xx',
      met: tessera.run.errors + non2xx + tessera.run.withoutToken === 0,
      detail: `${tessera.run.errors} errors, ${non2xx} non-2xx, ${tessera.run.withoutToken} 2xx without a token`,
    },
    {
      goal: 'One audit record per token, none missing',
      met: results.audit.ok,
      detail: `${results.audit.tokensReceived} tokens, ${results.audit.grantedRecords} granted records, ${results.audit.missing} missing, ${results.audit.duplicated} duplicated, ${results.audit.unreceived} unreceived`,
    },
    {
      goal: 'Tessera tokens/s ≥ 0.5 × the floor’s',
      met: results.ratios.tokensPerSecondVsFloor >= 0.5,
      detail: `×${fixed(results.ratios.tokensPerSecondVsFloor, 2)} of ${fixed(results.targets.floor.run.tokensPerSecond, 0)}`,
    },
  ];
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

function non2xxCell(figures: Figures): string {
  const entries = Object.entries(figures.non2xx);
  return entries.length === 0 ? '0' : entries.map(([status, n]) => `${n}×${status}`).join(' ');
}

const TARGETS = [
  ['tessera', 'Tessera /token'],
  ['peer', 'peer: oidc-provider'],
  ['floor', 'floor: verify + sign'],
] as const;

const COLUMNS = ['target', 'tokens/s', 'p50 ms', 'p99 ms', 'max ms', 'tokens', 'non-2xx', 'errors', 'taken'];

/** Above this many cores taken by other processes or the hypervisor, a run's figures are reported as disturbed. */
const DISTURBED_CORES = 0.1;

function takenCores(contention: Contention | undefined): number | undefined {
  return contention && contention.otherCores + contention.stolenCores;
}

function rows(results: BenchResults): string[][] {
  return TARGETS.map(([key, label]) => {
    const { run, contention } = results.targets[key];
    const taken = takenCores(contention);
    return [
      label,
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

/** A warning naming the runs that other processes disturbed, or undefined. */
function disturbance(results: BenchResults): string | undefined {
  const disturbed = TARGETS.filter(([key]) => (takenCores(results.targets[key].contention) ?? 0) > DISTURBED_CORES);
  if (disturbed.length === 0) return undefined;
  return `other processes or the hypervisor took CPU during ${disturbed.map(([, label]) => label).join(', ')} (the "taken" column, in cores): those figures are low; run again on a quiet machine`;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

/** The table printed after a run. */
export function renderTable(results: BenchResults): string {
  const all = [COLUMNS, ...rows(results)];
  const widths = COLUMNS.map((_, column) => Math.max(...all.map((row) => (row[column] ?? '').length)));
  const line = (row: string[]) =>
    row
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0)))
      .join('  ');
  const { ratios, coldStart, bundle, settings } = results;
  return [
    `${settings.connections} connections, ${settings.seconds} s per target after a ${settings.warmupSeconds} s warm-up; Tessera's storage in ${settings.storage}`,
    '',
    line(COLUMNS),
    ...rows(results).map(line),
    '',
    `Tessera / peer:  ×${fixed(ratios.tokensPerSecondVsPeer, 2)} tokens/s, ×${fixed(ratios.p99VsPeer, 2)} p99`,
    `Tessera / floor: ×${fixed(ratios.tokensPerSecondVsFloor, 2)} tokens/s`,
    `cold start: first token ${fixed(coldStart.firstTokenMs, 0)} ms after starting workerd (listening after ${fixed(coldStart.readyMs, 0)} ms)`,
    `bundle: ${kib(bundle.gzipBytes)} gzip (${kib(bundle.uploadBytes)} uploaded)`,
    '',
    ...results.goals.map((goal) => `${goal.met ? 'met   ' : 'MISSED'}  ${goal.goal}: ${goal.detail}`),
    ...[disturbance(results)].filter((line) => line !== undefined).map((line) => `\nWARNING: ${line}`),
  ].join('\n');
}

/** The figures as the Markdown that `docs/benchmarks.md` keeps between its markers. */
export function renderMarkdown(results: BenchResults): string {
  const m = results.machine;
  const { ratios, coldStart, bundle, settings } = results;
  const table = (header: string[], body: string[][]) =>
    [header, header.map(() => '---'), ...body].map((row) => `| ${row.join(' | ')} |`).join('\n');
  return [
    `Run on ${results.date.slice(0, 10)}: ${settings.connections} connections, ${settings.seconds} s per target after a ${settings.warmupSeconds} s warm-up (${fixed(results.elapsedSeconds, 0)} s in all); Tessera's storage in ${settings.storage}.`,
    '',
    table(COLUMNS, rows(results)),
    '',
    ...[disturbance(results)].filter((line) => line !== undefined).map((line) => `**Disturbed:** ${line}.\n`),
    table(
      ['figure', 'value'],
      [
        ['Tessera / peer, tokens/s', `×${fixed(ratios.tokensPerSecondVsPeer, 2)}`],
        ['Tessera / peer, p99', `×${fixed(ratios.p99VsPeer, 2)}`],
        ['Tessera / floor, tokens/s', `×${fixed(ratios.tokensPerSecondVsFloor, 2)}`],
        [
          'time to first token, cold',
          `${fixed(coldStart.firstTokenMs, 0)} ms (workerd listening after ${fixed(coldStart.readyMs, 0)} ms)`,
        ],
        [
          'bundle, gzip (`wrangler deploy --dry-run`)',
          `${kib(bundle.gzipBytes)} (${kib(bundle.uploadBytes)} uploaded)`,
        ],
        [
          'audit records',
          `${results.audit.grantedRecords} granted for ${results.audit.tokensReceived} tokens received: ${results.audit.missing} missing, ${results.audit.duplicated} duplicated`,
        ],
      ],
    ),
    '',
    table(
      ['target', 'met', 'figures'],
      results.goals.map((goal) => [goal.goal, goal.met ? 'yes' : '**no**', goal.detail]),
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
        ['peer', `oidc-provider ${m.oidcProvider}`],
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
