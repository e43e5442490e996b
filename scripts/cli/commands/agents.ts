/** `agents list|show|suspend|resume|revoke`: the inventory and its live state (`/admin/agents`). */
import { Command } from '@commander-js/extra-typings';
import { z } from 'zod';
import { path, request } from '../http';
import { jsonOption, pageLimit, reasonOption } from '../options';
import { fields, instant, jsonText, relative, table } from '../render';
import type { Session } from '../session';

const Agent = z.object({
  agent: z.string(),
  owner: z.string(),
  description: z.string().nullish(),
  labels: z.array(z.string()),
  attestation: z.object({
    method: z.string(),
    keys: z.array(z.string()).optional(),
    issuer: z.string().optional(),
    subject: z.string().optional(),
  }),
  dpop_required: z.boolean(),
  suspended: z.boolean(),
  revoked_before: z.string().nullable(),
  last_change: z.object({ action: z.string(), by: z.string(), reason: z.string(), at: z.string() }).nullable(),
});
type Agent = z.infer<typeof Agent>;

const AgentPage = z.object({ agents: z.array(Agent), next_cursor: z.string().nullable() });

const READ_ROLE = 'admin or auditor';

function attests(agent: Agent): string {
  const { attestation } = agent;
  if (attestation.method === 'self_signed') return `self-signed (${attestation.keys?.join(', ') ?? ''})`;
  return `${attestation.issuer ?? attestation.method}: ${attestation.subject ?? ''}`;
}

function lastChange(agent: Agent): string {
  const change = agent.last_change;
  return change === null ? '-' : `${change.action} by ${change.by} ${relative(change.at)}: ${change.reason}`;
}

function printAgent(session: Session, agent: Agent): void {
  session.io.out(
    fields([
      ['agent', agent.agent],
      ['state', agent.suspended ? 'SUSPENDED: every /token request is refused' : 'active'],
      ['owner', agent.owner],
      ['description', agent.description],
      ['labels', agent.labels.join(', ') || null],
      ['attests', attests(agent)],
      ['dpop', agent.dpop_required ? 'required' : 'optional'],
      ['revoked before', agent.revoked_before && `${instant(agent.revoked_before)}: tokens issued before are dead`],
      ['last change', lastChange(agent)],
    ]),
  );
}

function notFound(agent: string): string {
  return `no agent '${agent}' in the inventory: 'agents list' shows them`;
}

/** One of suspend, resume, revoke: the agent's state after it. */
function stateChange(
  open: () => Session,
  action: 'suspend' | 'resume' | 'revoke',
  done: (agent: string, suspended: boolean) => string,
) {
  const command = new Command(action)
    .argument('<agent>', 'the agent id')
    .addOption(reasonOption())
    .addOption(jsonOption());
  if (action === 'revoke')
    command.option(
      '--suspend',
      'suspend it in the same step: no token admitted after the revoke (a compromised agent)',
    );
  return command.action(async (id, options) => {
    const session = open();
    const suspend = 'suspend' in options && options.suspend === true;
    const agent = await request(
      session,
      {
        method: 'POST',
        path: path`/admin/agents/${id}/${action}`,
        json: { reason: options.reason, ...(suspend && { suspend }) },
        bearer: session.adminToken('admin'),
      },
      { schema: Agent, role: 'admin', notFound: notFound(id) },
    );
    if (options.json) {
      session.io.out(jsonText(agent));
      return;
    }
    session.io.out(`${done(id, suspend)}\n`);
    printAgent(session, agent);
  });
}

export function agentsCommand(open: () => Session): Command {
  const command = new Command('agents')
    .description('the agents in the inventory, their state, and stopping one (suspend, resume, revoke)')
    .addHelpText(
      'after',
      `
Suspend refuses all the agent's /token requests and holds every token it has inactive; resume lets it
request tokens again and gives back the tokens nothing else killed. Revoke kills every token it holds now
but lets it get new ones. To stop a compromised agent, revoke with --suspend: its tokens dead and no new
one, in one step.

Examples:
  npm run cli -- agents list
  npm run cli -- agents suspend demo-agent --reason "INC-4821: demo-agent is looping"
  npm run cli -- agents revoke demo-agent --suspend --reason "INC-4822: its key leaked"
  npm run cli -- agents show demo-agent`,
    );

  command
    .command('list')
    .description('every agent with its owner and live state (role admin or auditor)')
    .option('--limit <n>', 'agents per page, 1 to 500 (default 100)', pageLimit)
    .option('--cursor <agent>', 'start after this agent: the next_cursor of the previous page')
    .option('--all', 'follow next_cursor to the end')
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      const bearer = session.adminToken(READ_ROLE);
      const agents: Agent[] = [];
      let cursor = options.cursor;
      let page: z.infer<typeof AgentPage>;
      do {
        page = await request(
          session,
          { method: 'GET', path: '/admin/agents', query: { cursor, limit: options.limit?.toString() }, bearer },
          { schema: AgentPage, role: READ_ROLE },
        );
        agents.push(...page.agents);
        cursor = page.next_cursor ?? undefined;
      } while (options.all && cursor !== undefined);
      if (options.json) {
        session.io.out(jsonText(options.all ? { agents, next_cursor: null } : page));
        return;
      }
      session.io.out(
        table(
          ['AGENT', 'STATE', 'OWNER', 'ATTESTS', 'LAST CHANGE'],
          agents.map((agent) => [
            agent.agent,
            agent.suspended ? 'SUSPENDED' : 'active',
            agent.owner,
            attests(agent),
            lastChange(agent),
          ]),
          'no agents',
        ),
      );
      if (!options.all && page.next_cursor !== null)
        session.io.out(`more agents: add --cursor ${page.next_cursor}, or --all\n`);
    });

  command
    .command('show')
    .description('one agent: owner, how it attests, suspended, revoked before, last change (role admin or auditor)')
    .argument('<agent>', 'the agent id')
    .addOption(jsonOption())
    .action(async (id, options) => {
      const session = open();
      const agent = await request(
        session,
        { method: 'GET', path: path`/admin/agents/${id}`, bearer: session.adminToken(READ_ROLE) },
        { schema: Agent, role: READ_ROLE, notFound: notFound(id) },
      );
      if (options.json) session.io.out(jsonText(agent));
      else printAgent(session, agent);
    });

  command.addCommand(
    stateChange(
      open,
      'suspend',
      (id) => `suspended ${id}: its /token requests are refused and its tokens inactive until resume`,
    ).description("refuse all the agent's /token requests and hold its tokens inactive (role admin)"),
  );
  command.addCommand(
    stateChange(
      open,
      'resume',
      (id) => `resumed ${id}: it may request tokens again, and its tokens nothing else killed are active again`,
    ).description('let a suspended agent request tokens again; its tokens come back unless revoked (role admin)'),
  );
  command.addCommand(
    stateChange(open, 'revoke', (id, suspended) =>
      suspended
        ? `revoked every token ${id} held and suspended it: no new token until resume`
        : `revoked every token ${id} held; it may get new ones`,
    ).description('revoke every token the agent holds now; with --suspend, no new ones either (role admin)'),
  );
  return command;
}
