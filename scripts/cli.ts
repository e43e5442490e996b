/**
 * Tessera's command line: `npm run cli -- <command>`; `npm run cli -- --help` lists the commands, and
 * `npm run cli -- help <command>` shows one's flags and examples. The commands are in `scripts/cli/`.
 */
import { runCli } from './cli/program';
import { processIo } from './cli/session';

process.exitCode = await runCli(process.argv.slice(2), processIo());
