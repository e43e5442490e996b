/**
 * The command tree and how a run ends: commander parses, the commands act, and every failure becomes one
 * line and an exit code (see {@link EXIT}); a stack is printed only for a bug, and only with `--debug`.
 */
import {
  Command,
  CommanderError,
  type CommandUnknownOpts,
  Help,
  InvalidArgumentError,
  Option,
} from '@commander-js/extra-typings';
import {
  adminCredentialCommand,
  attestCommand,
  introspectionCredentialCommand,
  keygenCommand,
  tokenCommand,
} from './commands/agent';
import { agentsCommand } from './commands/agents';
import { approvalsCommand } from './commands/approvals';
import { auditCommand } from './commands/audit';
import { healthCommand } from './commands/health';
import { killSwitchCommand } from './commands/kill-switch';
import { reviewCommand } from './commands/review';
import { tasksCommand, tokensCommand } from './commands/revocation';
import { CliError, EXIT, type ExitCode } from './errors';
import { checkRequired } from './options';
import { DEFAULT_URL, type Io, parseBrokerUrl, Session } from './session';

function urlOption(value: string): string {
  try {
    return parseBrokerUrl(value);
  } catch (error) {
    throw new InvalidArgumentError(error instanceof Error ? error.message : String(error));
  }
}

const AFTER_HELP = `
Environment:
  TESSERA_URL          the broker, when --url is not given (default ${DEFAULT_URL})
  TESSERA_ADMIN_TOKEN  the admin credential for admin commands, when --admin-token is not given

Exit codes:
  0  done
  1  the broker refused, could not be reached or answered oddly, or a check failed
  2  a usage error: unknown command or flag, missing or bad value, unreadable key file

Run "npm run cli -- help <command>" (or <command> --help) for a command's flags and examples.`;

/** Settings that `.command()` copies to subcommands, for those built on their own and added. */
function inheritSettings(command: CommandUnknownOpts): void {
  for (const sub of command.commands) {
    sub.copyInheritedSettings(command);
    inheritSettings(sub);
  }
}

/** The CLI's commands, writing to `io`. A program parses once: make one per run. */
export function createProgram(io: Io): CommandUnknownOpts {
  const program = new Command('npm run cli --')
    .description("Tessera's command line: agent keys and tokens, and what the admin on call reaches for")
    .option('--url <url>', `the broker (default: $TESSERA_URL, else ${DEFAULT_URL})`, urlOption)
    .option(
      '--admin-token <credential>',
      'the admin credential (default: $TESSERA_ADMIN_TOKEN, which keeps it out of shell history)',
    )
    .option('--debug', 'print the stack of an unexpected error')
    .addOption(new Option('--broker <url>', 'deprecated: --url').hideHelp())
    .addOption(new Option('--credential <credential>', 'deprecated: --admin-token').hideHelp())
    .configureOutput({
      writeOut: (text) => io.out(text),
      writeErr: (text) => io.err(text),
    })
    .configureHelp({
      showGlobalOptions: true,
      // A group lists what it does (`agents list|show|...`) rather than a bare name.
      subcommandTerm: (command) =>
        command.commands.length > 0
          ? `${command.name()} ${command.commands.map((sub) => sub.name()).join('|')}`
          : new Help().subcommandTerm(command),
    })
    .showSuggestionAfterError(true)
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .addHelpText('after', AFTER_HELP);

  const open = () => new Session(io, program.opts());
  const groups = {
    'Set up:': [keygenCommand(open), adminCredentialCommand(open), introspectionCredentialCommand(open)],
    'As an agent:': [attestCommand(open), tokenCommand(open)],
    'On call:': [
      killSwitchCommand(open),
      agentsCommand(open),
      tokensCommand(open),
      tasksCommand(open),
      approvalsCommand(open),
      auditCommand(open),
      healthCommand(open),
    ],
    'Access review:': [reviewCommand(open)],
  };
  for (const [heading, commands] of Object.entries(groups)) {
    for (const command of commands) program.addCommand(command.helpGroup(heading));
  }
  inheritSettings(program);
  program.hook('preAction', (_program, action) => checkRequired(action));
  return program;
}

/**
 * Spellings of earlier versions, still understood: `approvals` alone lists (now `approvals list`), and
 * `approve ID` / `deny ID` are `approvals approve ID` / `approvals deny ID`.
 */
function todaysSpelling(argv: readonly string[], io: Io): string[] {
  const [first, second] = argv;
  if (first === 'approve' || first === 'deny') {
    io.err(`warning: '${first}' is now 'approvals ${first}'\n`);
    return ['approvals', ...argv];
  }
  const help = second === '-h' || second === '--help';
  if (first === 'approvals' && (second === undefined || (second.startsWith('-') && !help)))
    return ['approvals', 'list', ...argv.slice(1)];
  return [...argv];
}

/**
 * `help <command> [<subcommand>]` at any depth, as `<command> [<subcommand>] --help`. When the path names
 * no command, the path is parsed without the help flag, so that commander says which name is unknown and
 * suggests the nearest.
 */
function helpAsFlag(program: CommandUnknownOpts, argv: string[]): string[] {
  let command = program;
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === 'help' && command.commands.length > 0) {
      const rest = argv.slice(i + 1);
      let target = command;
      for (const name of rest) {
        if (target.commands.length === 0 || name.startsWith('-')) break;
        const next = target.commands.find((sub) => sub.name() === name || sub.aliases().includes(name));
        if (next === undefined) return [...argv.slice(0, i), ...rest];
        target = next;
      }
      return [...argv.slice(0, i), ...rest, '--help'];
    }
    const next = command.commands.find((sub) => sub.name() === argv[i]);
    if (next === undefined) break;
    command = next;
  }
  return argv;
}

/**
 * Runs the CLI on `argv` (the words after `npm run cli --`) and returns its exit code. Everything goes
 * through `io`, so tests run it in-process.
 */
export async function runCli(argv: readonly string[], io: Io): Promise<ExitCode> {
  const program = createProgram(io);
  try {
    await program.parseAsync(helpAsFlag(program, todaysSpelling(argv, io)), { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    // commander has printed its message (and a suggestion) already; help exits 0.
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (error instanceof CliError) {
      io.err(`error: ${error.message}\n`);
      return error.exitCode;
    }
    if (argv.includes('--debug'))
      io.err(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    else
      io.err(
        `error: unexpected: ${error instanceof Error ? error.message : String(error)} (a bug: run again with --debug and report the stack)\n`,
      );
    return EXIT.failed;
  }
}
