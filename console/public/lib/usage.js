/**
 * What the Overview's charts show, from the daily counts `GET /admin/usage` answers: per day, per refusal
 * reason and per agent, with every day of the window present (a day without a request is a zero, not a gap).
 */

/**
 * A count as `GET /admin/usage` lists it (docs/api.md).
 * @typedef {object} UsageRow
 * @property {string} day `YYYY-MM-DD`, UTC
 * @property {string} agent
 * @property {string} outcome `granted`, `refused`, or an approval's step
 * @property {string} reason a refusal's reason, `''` otherwise
 * @property {number} count
 */

/**
 * @typedef {object} UsageSummary
 * @property {{ day: string, granted: number, refused: number }[]} days oldest first, every day of the window
 * @property {{ reason: string, count: number }[]} reasons most frequent first
 * @property {{ agent: string, granted: number, refused: number }[]} agents most requests first
 */

/**
 * @param {{ rows: UsageRow[] }} usage
 * @param {string} since the window's first day, `YYYY-MM-DD`
 * @param {number} days the window's length
 * @returns {UsageSummary}
 */
export function usageSummary(usage, since, days) {
  /** @type {Map<string, { day: string, granted: number, refused: number }>} */
  const perDay = new Map();
  const first = Date.parse(`${since}T00:00:00Z`);
  for (let n = 0; n < days; n++) {
    const day = new Date(first + n * 86_400_000).toISOString().slice(0, 10);
    perDay.set(day, { day, granted: 0, refused: 0 });
  }
  /** @type {Map<string, number>} */
  const perReason = new Map();
  /** @type {Map<string, { agent: string, granted: number, refused: number }>} */
  const perAgent = new Map();
  for (const row of usage.rows) {
    if (row.outcome !== 'granted' && row.outcome !== 'refused') continue;
    const outcome = row.outcome;
    const day = perDay.get(row.day);
    if (day !== undefined) day[outcome] += row.count;
    if (outcome === 'refused') perReason.set(row.reason, (perReason.get(row.reason) ?? 0) + row.count);
    const agent = perAgent.get(row.agent) ?? { agent: row.agent, granted: 0, refused: 0 };
    agent[outcome] += row.count;
    perAgent.set(row.agent, agent);
  }
  return {
    days: [...perDay.values()],
    reasons: [...perReason]
      .map(([reason, count]) => ({ reason, count }))
      .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)),
    agents: [...perAgent.values()].sort(
      (a, b) => b.granted + b.refused - (a.granted + a.refused) || a.agent.localeCompare(b.agent),
    ),
  };
}
