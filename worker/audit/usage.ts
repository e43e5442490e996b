/**
 * The decisions counted per day in `usage_daily` (schema.ts, migration 0009): read for a window of days, and
 * shaped into the series the console's Overview draws (`GET /admin/usage`); with each agent's last token in
 * the hot log, what the access review reads (`GET /admin/review`). The counts outlive the records: a window
 * longer than the hot log still sees every day.
 */
import { z } from 'zod';
import { publicEcho } from '../core/errors';
import { utcDay } from '../core/lifecycle';
import type { UsageDaily } from './schema';

const DAY_MS = 86_400_000;
/** The longest window: a year and a day, the longest an access review looks back. */
export const MAX_USAGE_DAYS = 366;
/** Agents {@link usageReport} names by their counts. */
const TOP_AGENTS = 10;

/** A window of whole UTC days, `from` to `to` inclusive. */
export interface DayWindow {
  days: number;
  from: string;
  to: string;
}

/** The `days` whole UTC days up to and including the day of `nowMs`. */
export function dayWindow(days: number, nowMs: number): DayWindow {
  return { days, from: utcDay(nowMs - (days - 1) * DAY_MS), to: utcDay(nowMs) };
}

/** Every day of `window`, oldest first. */
function daysOf(window: DayWindow): string[] {
  const first = Date.parse(`${window.from}T00:00:00Z`);
  return Array.from({ length: window.days }, (_, i) => utcDay(first + i * DAY_MS));
}

/** `?days=` as a whole number of days, 1 to {@link MAX_USAGE_DAYS}. */
export const Days = z
  .string()
  .regex(/^[0-9]{1,3}$/)
  .transform(Number)
  .pipe(z.number().int().min(1).max(MAX_USAGE_DAYS));

export const UsageQuery = z.strictObject({
  days: Days.default(30),
  agent: z.string().min(1).max(128).optional(),
});
export type UsageQuery = z.infer<typeof UsageQuery>;

const USAGE_HINTS: ReadonlyMap<string, string> = new Map([
  ['days', `days is a whole number of days, 1 to ${MAX_USAGE_DAYS}`],
  ['agent', 'agent is an agent id, 1-128 characters'],
]);

/** What is wrong with a query, in words a caller can act on. */
export function queryProblem(error: z.ZodError, hints: ReadonlyMap<string, string> = USAGE_HINTS): string {
  const [issue] = error.issues;
  if (issue?.code === 'unrecognized_keys') {
    return `unknown parameter ${publicEcho(issue.keys[0] ?? '')}: the parameters are ${[...hints.keys()].join(', ')}`;
  }
  const field = String(issue?.path[0] ?? '');
  return `invalid ${publicEcho(field)}: ${hints.get(field) ?? 'see docs/api.md'}`;
}

/** The counts of `window`, of one agent when `agent` is given: a row per day and key that had any. */
export async function usageIn(db: D1Database, window: DayWindow, agent?: string): Promise<UsageDaily[]> {
  const { results } = await db
    .prepare(
      `SELECT day, agent, audience, actions, outcome, reason, count FROM usage_daily
       WHERE day >= ?1 AND day <= ?2 AND (?3 IS NULL OR agent = ?3)`,
    )
    .bind(window.from, window.to, agent ?? null)
    .all<UsageDaily>();
  return results;
}

/** The counts of one day, or of the window, by what the Overview tells apart. */
export interface Tally {
  issued: number;
  refused: number;
  approvals_asked: number;
  approved: number;
  denied: number;
}

const emptyTally = (): Tally => ({ issued: 0, refused: 0, approvals_asked: 0, approved: 0, denied: 0 });

/** Which tally a row adds to; a poll of a pending approval adds to none. */
function tallyField(outcome: UsageDaily['outcome']): keyof Tally | undefined {
  switch (outcome) {
    case 'granted':
      return 'issued';
    case 'refused':
      return 'refused';
    case 'approval_asked':
      return 'approvals_asked';
    case 'approved':
    case 'denied':
      return outcome;
    default:
      return undefined;
  }
}

/** Adds `n` to `key`'s count in `counts`. */
function bump<K>(counts: Map<K, number>, key: K, n: number): void {
  counts.set(key, (counts.get(key) ?? 0) + n);
}

/** The Overview's series: tokens issued and refused per day (every day, zeros included), refusals by reason, top agents. */
export function usageReport(rows: readonly UsageDaily[], window: DayWindow) {
  const byDay = new Map(daysOf(window).map((day) => [day, emptyTally()]));
  const totals = emptyTally();
  const reasons = new Map<string, number>();
  const agents = new Map<string, Tally>();
  for (const row of rows) {
    const field = tallyField(row.outcome);
    const day = byDay.get(row.day);
    if (field === undefined || day === undefined) continue;
    day[field] += row.count;
    totals[field] += row.count;
    if (row.outcome === 'refused') bump(reasons, row.reason, row.count);
    if (row.agent !== '') {
      const agent = agents.get(row.agent) ?? emptyTally();
      agent[field] += row.count;
      agents.set(row.agent, agent);
    }
  }
  return {
    ...window,
    totals,
    series: [...byDay].map(([day, tally]) => ({ day, ...tally })),
    refusals_by_reason: [...reasons]
      .map(([reason, count]) => ({ reason, count }))
      .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1)),
    top_agents: [...agents]
      .map(([agent, tally]) => ({ agent, ...tally }))
      .sort((a, b) => b.issued + b.refused - (a.issued + a.refused) || (a.agent < b.agent ? -1 : 1))
      .slice(0, TOP_AGENTS),
  };
}

/**
 * The time (epoch ms) of each agent's last token that the hot log holds; agents with none there are left
 * out. One query: per agent, its records newest first by the `(agent, seq)` index, up to its last grant.
 */
export async function lastTokens(db: D1Database, agents: readonly string[]): Promise<Map<string, number>> {
  const { results } = await db
    .prepare(
      `SELECT a.value AS agent, (SELECT e.at FROM audit_events e
         WHERE e.agent = a.value AND e.event = 'token.exchange' AND e.decision = 'granted'
         ORDER BY e.seq DESC LIMIT 1) AS at
       FROM json_each(?1) a`,
    )
    .bind(JSON.stringify(agents))
    .all<{ agent: string; at: number | null }>();
  return new Map(results.flatMap((row) => (row.at === null ? [] : [[row.agent, row.at] as const])));
}

export const ReviewQuery = z.strictObject({ days: Days.default(90) });

export const REVIEW_HINTS: ReadonlyMap<string, string> = new Map([
  ['days', `days is a whole number of days, 1 to ${MAX_USAGE_DAYS}`],
]);
