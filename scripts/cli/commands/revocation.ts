/**
 * `tokens revoke|check` and `tasks complete|revoke`: ending tokens early (`/admin/tokens/{jti}/revoke`,
 * `/admin/tasks/{id}/revoke`, `/tasks/{id}/complete`) and asking whether one is still active (`/introspect`).
 */
import { Command } from '@commander-js/extra-typings';
import { decodeJwt } from 'jose';
import { z } from 'zod';
import { CliError, usageError } from '../errors';
import { path, request } from '../http';
import { jsonOption, reasonOption, required } from '../options';
import { fields, jsonText, when } from '../render';
import type { Session } from '../session';

/** An access token from an argument, or from standard input when it is `-` (out of `ps` and shell history). */
async function accessToken(session: Session, value: string): Promise<string> {
  const token = (value === '-' ? await session.io.readStdin() : value).trim();
  if (token === '') throw usageError(value === '-' ? 'no token on standard input' : 'the token is empty');
  if (/\s/.test(token)) throw usageError('the token contains a space or a line break: give one access token');
  return token;
}

/** The `aud` the token names (not verified: it only says whose credential to present), for `--audience`. */
function tokenAudience(token: string): string {
  let aud: unknown;
  try {
    ({ aud } = decodeJwt(token));
  } catch {
    throw usageError('the token is not a JWT, so it names no audience: pass --audience');
  }
  if (typeof aud !== 'string' || aud === '') throw usageError('the token names no single audience: pass --audience');
  return aud;
}

const TokenRevoked = z.object({ jti: z.string(), agent: z.string(), revoked: z.literal(true) });
const Introspection = z.union([
  z.object({ active: z.literal(false) }),
  z.object({
    active: z.literal(true),
    token_type: z.string(),
    sub: z.string(),
    aud: z.union([z.string(), z.array(z.string())]),
    scope: z.string(),
    exp: z.number(),
    jti: z.string(),
    owner: z.string().optional(),
    task: z.object({ id: z.string() }),
    approval: z.object({ id: z.string(), by: z.union([z.string(), z.array(z.string())]) }).optional(),
  }),
]);
const TaskCompleted = z.object({ task_id: z.string(), completed: z.literal(true) });
const TaskRevoked = z.object({ task_id: z.string(), agents: z.array(z.string()), revoked: z.literal(true) });

export function tokensCommand(open: () => Session): Command {
  const command = new Command('tokens')
    .description('revoke one token by its jti, or check whether a token is still active')
    .addHelpText(
      'after',
      `
Examples:
  npm run cli -- tokens revoke 7f1c2d3e-... --reason "token pasted into a ticket"
  echo "$TOKEN" | TESSERA_INTROSPECTION_CREDENTIAL=... npm run cli -- tokens check -`,
    );

  command
    .command('revoke')
    .description('revoke one token by its jti, from the audit log (role admin)')
    .argument('<jti>', "the token's jti (audit list --event token.exchange shows them)")
    .addOption(reasonOption())
    .addOption(jsonOption())
    .action(async (jti, options) => {
      const session = open();
      const revoked = await request(
        session,
        {
          method: 'POST',
          path: path`/admin/tokens/${jti}/revoke`,
          json: { reason: options.reason },
          bearer: session.adminToken('admin'),
        },
        {
          schema: TokenRevoked,
          role: 'admin',
          notFound: `the audit log has no token issued with jti '${jti}': check the jti`,
        },
      );
      if (options.json) session.io.out(jsonText(revoked));
      else session.io.out(`revoked token ${revoked.jti} of ${revoked.agent}\n`);
    });

  command
    .command('check')
    .description(
      "whether a token is still active, and its claims (POST /introspect, as the token's API: its credential in TESSERA_INTROSPECTION_CREDENTIAL)",
    )
    .argument('<token>', 'the access token, or - to read it from standard input')
    .option('--audience <url>', "the API whose credential this is; default the token's aud")
    .addOption(jsonOption())
    .action(async (value, options) => {
      const session = open();
      const token = await accessToken(session, value);
      const audience = options.audience ?? tokenAudience(token);
      const answer = await request(
        session,
        {
          method: 'POST',
          path: '/introspect',
          form: { token },
          basic: { clientId: audience, password: session.introspectionCredential() },
        },
        {
          schema: Introspection,
          unauthorized: `the broker does not accept the introspection credential of ${audience}: check TESSERA_INTROSPECTION_CREDENTIAL (and --audience)`,
        },
      );
      if (options.json) session.io.out(jsonText(answer));
      if (!answer.active) {
        throw new CliError(
          `the token is not active: expired, revoked, its task finished, its agent suspended or revoked, the kill switch engaged, not a token of this broker, or not one for ${audience}`,
        );
      }
      if (options.json) return;
      const by = answer.approval?.by;
      session.io.out(
        fields([
          ['active', `yes, a ${answer.token_type} token`],
          ['agent', answer.sub],
          ['owner', answer.owner],
          ['audience', [answer.aud].flat().join(', ')],
          ['scope', answer.scope],
          ['task_id', answer.task.id],
          ['expires', when(answer.exp * 1000)],
          ['jti', answer.jti],
          ['approval', answer.approval && `${answer.approval.id} by ${[by].flat().join(', ')}`],
        ]),
      );
    });

  return command;
}

export function tasksCommand(open: () => Session): Command {
  const command = new Command('tasks')
    .description('end a task: every token of it is revoked, and its id gets no new token')
    .addHelpText(
      'after',
      `
Examples:
  npm run cli -- tasks revoke T-1234 --reason "task hijacked"                     # an admin
  echo "$TOKEN" | npm run cli -- tasks complete T-1234 --token -                  # the agent, when done`,
    );

  command
    .command('complete')
    .description("the agent's call when its task is done, with a token of that task (no admin credential)")
    .argument('<task-id>', 'the task id')
    .addOption(required('--token <token>', 'an access token of the task, or - to read it from standard input'))
    .addOption(jsonOption())
    .action(async (taskId, options) => {
      const session = open();
      const bearer = await accessToken(session, options.token);
      const completed = await request(
        session,
        { method: 'POST', path: path`/tasks/${taskId}/complete`, bearer },
        {
          schema: TaskCompleted,
          unauthorized: 'the broker does not accept the token: it must be a live token of this broker',
          forbidden: `the token is not one of task '${taskId}'`,
        },
      );
      if (options.json) session.io.out(jsonText(completed));
      else session.io.out(`completed task ${completed.task_id}: every token of it is revoked\n`);
    });

  command
    .command('revoke')
    .description('revoke every token of a task, of every agent that has one, and refuse the task new ones (role admin)')
    .argument('<task-id>', 'the task id')
    .addOption(reasonOption())
    .addOption(jsonOption())
    .action(async (taskId, options) => {
      const session = open();
      const revoked = await request(
        session,
        {
          method: 'POST',
          path: path`/admin/tasks/${taskId}/revoke`,
          json: { reason: options.reason },
          bearer: session.adminToken('admin'),
        },
        {
          schema: TaskRevoked,
          role: 'admin',
          notFound: `the audit log has no token issued for task '${taskId}': check the task id`,
        },
      );
      if (options.json) session.io.out(jsonText(revoked));
      else
        session.io.out(
          `revoked task ${revoked.task_id}: every token of it is dead (agents: ${revoked.agents.join(', ')})\n`,
        );
    });

  return command;
}
