/** `kill-switch status|engage|release`: the global stop on all token issuance (`/admin/kill-switch`). */
import { Command, Option } from '@commander-js/extra-typings';
import { z } from 'zod';
import { CliError, usageError } from '../errors';
import { request } from '../http';
import { jsonOption, reasonOption } from '../options';
import { fields, jsonText, when } from '../render';
import type { Session } from '../session';

const KillSwitch = z.object({
  engaged: z.boolean(),
  reason: z.string().nullable(),
  by: z.string().nullable(),
  at: z.string().nullable(),
  version: z.number(),
  shards: z.object({ total: z.number(), current: z.number() }),
});
type KillSwitch = z.infer<typeof KillSwitch>;

const PATH = '/admin/kill-switch';

/** What a 503 means for a change: some shards took it (and already act on it), some did not yet. */
const PARTLY_APPLIED =
  'not every shard took the change yet (those that did already act on it): run the same command again';

function print(session: Session, state: KillSwitch, json: boolean | undefined): void {
  if (json) {
    session.io.out(jsonText(state));
    return;
  }
  session.io.out(
    state.engaged
      ? 'kill switch ENGAGED: no token is issued anywhere, and every token introspects as inactive\n'
      : 'kill switch released: tokens are issued as policy allows\n',
  );
  session.io.out(
    fields([
      ['reason', state.reason],
      ['by', state.by],
      ['since', when(state.at)],
      ['version', state.version],
      ['shards', `${state.shards.current} of ${state.shards.total} at this version`],
    ]),
  );
}

async function change(session: Session, bearer: string, engaged: boolean, reason: string): Promise<KillSwitch> {
  return request(
    session,
    { method: 'PUT', path: PATH, json: { engaged, reason }, bearer },
    { schema: KillSwitch, role: 'admin', unavailable: PARTLY_APPLIED },
  );
}

export function killSwitchCommand(open: () => Session): Command {
  const command = new Command('kill-switch')
    .description('the global kill switch: stop all token issuance at once, and release it')
    .addHelpText(
      'after',
      `
Once engage answers, no /token anywhere gets a token and introspection answers active: false for every
token, until it is released. Releasing does not revive revoked tokens; unexpired tokens that nothing else
revoked are active again (revoke agents too if theirs must stay dead).

Examples:
  npm run cli -- kill-switch engage --reason "INC-4821: leaked agent credentials"
  npm run cli -- kill-switch status
  npm run cli -- kill-switch release --reason "INC-4821 contained"`,
    );

  command
    .command('status')
    .description('whether it is engaged, since when, by whom and why (role admin or auditor)')
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      const state = await request(
        session,
        { method: 'GET', path: PATH, bearer: session.adminToken('admin or auditor') },
        { schema: KillSwitch, role: 'admin or auditor' },
      );
      print(session, state, options.json);
    });

  command
    .command('engage')
    .description('stop all token issuance now (role admin); asks to confirm unless --yes')
    .addOption(reasonOption())
    .addOption(new Option('--yes', 'do not ask to confirm'))
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      // Before the question: no point confirming what cannot be sent.
      const bearer = session.adminToken('admin');
      if (!options.yes) {
        if (!session.io.interactive)
          throw usageError(
            'kill-switch engage stops all token issuance: pass --yes to confirm (no terminal to ask on)',
          );
        const answer = await session.io.ask(
          `Engage the kill switch on ${session.url}? No agent gets a token until it is released. Type "yes": `,
        );
        if (answer.trim().toLowerCase() !== 'yes') throw new CliError('not engaged: not confirmed');
      }
      print(session, await change(session, bearer, true, options.reason), options.json);
    });

  command
    .command('release')
    .description('let tokens be issued again (role admin); revoked tokens stay revoked')
    .addOption(reasonOption())
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      print(session, await change(session, session.adminToken('admin'), false, options.reason), options.json);
    });

  return command;
}
