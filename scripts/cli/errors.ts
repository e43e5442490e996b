/**
 * How the CLI fails: a {@link CliError} is a mistake or a refusal the user can act on, printed as one line
 * with its exit code; anything else is a bug, printed with its stack only under `--debug`.
 */

/** The CLI's exit codes, as docs/operations.md documents them. */
export const EXIT = {
  /** The command did what it says. */
  ok: 0,
  /** The broker refused, could not be reached or answered oddly, or a check failed (a broken chain, an inactive token). */
  failed: 1,
  /** The command line is wrong: an unknown command or flag, a missing or bad value, an unreadable key file. */
  usage: 2,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure with one line that says what is wrong and what to do. */
export class CliError extends Error {
  override readonly name = 'CliError';

  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.failed,
  ) {
    super(message);
  }
}

/** A mistake on the command line (exit code 2). */
export function usageError(message: string): CliError {
  return new CliError(message, EXIT.usage);
}
