/**
 * Plain-text output for a person: aligned tables and fields, times with how long ago, and commands to
 * copy. `--json` bypasses all of it and prints the broker's answer.
 */

/** Cells longer than this are cut in a table (`--json` has them whole). */
const CELL_MAX = 60;

function cut(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ');
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Columns aligned with two spaces under a header row; an empty table says so. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], empty: string): string {
  if (rows.length === 0) return `${empty}\n`;
  const cells = [headers, ...rows].map((row) => row.map((cell) => cut(cell, CELL_MAX)));
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => row[column]?.length ?? 0)));
  return cells
    .map((row) =>
      row
        .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

/** `label: value` lines with the values aligned; a missing value shows as `-`. */
export function fields(pairs: readonly (readonly [string, string | number | boolean | null | undefined])[]): string {
  const width = Math.max(...pairs.map(([label]) => label.length)) + 1;
  return pairs
    .map(([label, value]) => `${`${label}:`.padEnd(width)} ${value ?? '-'}`)
    .join('\n')
    .concat('\n');
}

/** An instant to the second, in UTC: `2026-11-20T03:14:07Z`. */
export function instant(at: string | number): string {
  const date = new Date(at);
  return Number.isNaN(date.getTime()) ? String(at) : date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** How far `at` is from `now`, roughly: `in 14 min`, `3 h ago`. */
export function relative(at: string | number, now = Date.now()): string {
  const ms = new Date(at).getTime() - now;
  if (Number.isNaN(ms)) return '';
  const seconds = Math.round(Math.abs(ms) / 1000);
  const amount =
    seconds < 120
      ? `${seconds} s`
      : seconds < 7200
        ? `${Math.round(seconds / 60)} min`
        : seconds < 172_800
          ? `${Math.round(seconds / 3600)} h`
          : `${Math.round(seconds / 86_400)} days`;
  return ms >= 0 ? `in ${amount}` : `${amount} ago`;
}

/** An instant and how far it is from now: `2026-11-20T03:14:07Z (3 min ago)`. */
export function when(at: string | number | null | undefined, now = Date.now()): string | null {
  if (at === null || at === undefined) return null;
  return `${instant(at)} (${relative(at, now)})`;
}

/** A word as a POSIX shell reads it back: quoted only when it must be. */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A command line to copy, its words quoted for the shell. */
export function commandLine(words: readonly string[]): string {
  return words.map(shellWord).join(' ');
}

/** The answer as `--json` prints it. */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
