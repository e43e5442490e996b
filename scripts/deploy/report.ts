/**
 * Prints a deploy report: errors first, then warnings, each with its code, `file:line`, what is wrong and
 * the fix.
 */
import type { DeployProblem } from './problems';

function byImportance(a: DeployProblem, b: DeployProblem): number {
  if (a.severity !== b.severity) return a.severity === 'error' ? -1 : 1;
  return a.file.localeCompare(b.file) || a.line - b.line;
}

/** The report as text, ending with the count and what it means for `npm run deploy`. */
export function formatReport(problems: readonly DeployProblem[]): string {
  const errors = problems.filter((problem) => problem.severity === 'error').length;
  const warnings = problems.length - errors;
  const lines = [...problems]
    .sort(byImportance)
    .flatMap((problem) => [
      `${problem.severity} ${problem.code}  ${problem.file}:${problem.line}`,
      `  ${problem.message}`,
      `  fix: ${problem.fix}`,
      '',
    ]);
  const count = `${errors} ${errors === 1 ? 'error' : 'errors'}, ${warnings} ${warnings === 1 ? 'warning' : 'warnings'}`;
  const verdict =
    errors > 0
      ? 'errors stop `npm run deploy`; warnings do not'
      : warnings > 0
        ? 'ready to deploy; read the warnings first'
        : 'ready to deploy';
  return [...lines, `deploy check: ${count}: ${verdict}`].join('\n');
}
