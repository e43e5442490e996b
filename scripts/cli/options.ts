/**
 * Flags shared by many commands, and required flags checked after unknown ones: commander checks its own
 * mandatory options first, so `--agnet x` would say "--agent not specified" instead of "did you mean --agent?".
 */
import { type CommandUnknownOpts, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { EXIT } from './errors';

const REQUIRED = new WeakSet<object>();

/**
 * An option the command cannot run without, shown under "Required:" in its help. Typed as mandatory, but
 * checked by {@link checkRequired} (a preAction hook), which runs once commander has reported unknown flags.
 */
export function required<Usage extends string>(flags: Usage, description: string) {
  const option = new Option(flags, description).makeOptionMandatory().helpGroup('Required:');
  option.mandatory = false;
  REQUIRED.add(option);
  return option;
}

/** The preAction hook: every {@link required} option of the command about to run has a value. */
export function checkRequired(command: CommandUnknownOpts): void {
  for (const option of command.options) {
    if (REQUIRED.has(option) && command.getOptionValue(option.attributeName()) === undefined) {
      command.error(`error: required option '${option.flags}' not specified`, {
        exitCode: EXIT.usage,
        code: 'commander.missingMandatoryOptionValue',
      });
    }
  }
}

/** Parses a whole number of at least 1. */
export function positiveInteger(value: string): number {
  if (!/^[1-9][0-9]{0,9}$/.test(value)) throw new InvalidArgumentError('expected a whole number of at least 1.');
  return Number(value);
}

/** `--reason`, which every change needs: it goes to the audit log with who made the change. */
export function reasonOption() {
  return required('--reason <why>', 'why: recorded in the audit log with who did it');
}

/** `--json`: print the broker's answer itself rather than a summary. */
export function jsonOption() {
  return new Option('--json', "print the broker's answer as JSON");
}

/** Parses a page size: the broker's listings take 1 to 500. */
export function pageLimit(value: string): number {
  if (!/^[0-9]{1,3}$/.test(value) || Number(value) < 1 || Number(value) > 500)
    throw new InvalidArgumentError('expected a whole number from 1 to 500.');
  return Number(value);
}
