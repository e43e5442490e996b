/** `approvals list|show|approve|deny`: step-up approvals, as an approver sees them (`/admin/approvals`). */
import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { z } from 'zod';
import { path, request } from '../http';
import { jsonOption, reasonOption } from '../options';
import { fields, jsonText, relative, table, when } from '../render';
import type { Session } from '../session';

const STATUSES = ['pending', 'approved', 'denied', 'expired', 'collected'] as const;

const Approval = z.object({
  id: z.string(),
  status: z.string(),
  agent: z.string(),
  owner: z.string(),
  audience: z.string(),
  actions: z.array(z.string()),
  needs_approval: z.array(z.string()),
  task: z.object({ id: z.string(), description: z.string() }),
  justification: z.string().nullish(),
  ttl: z.number(),
  created_at: z.string(),
  expires_at: z.string(),
  approvals_required: z.number(),
  approver_groups: z.array(z.string()),
  four_eyes: z.boolean(),
  rollback: z.array(
    z.object({
      grant: z.string(),
      runbook: z.string().optional(),
      action: z.string().optional(),
      none: z.string().optional(),
    }),
  ),
  decisions: z.array(z.object({ by: z.string(), decision: z.string(), reason: z.string(), at: z.string() })),
});
type Approval = z.infer<typeof Approval>;

const ApprovalPage = z.object({
  approvals: z.array(Approval),
  next_cursor: z.string().nullable(),
  agents: z.array(z.object({ agent: z.string(), count: z.number() })),
});
type ApprovalPage = z.infer<typeof ApprovalPage>;

/** Parses a page size: the approvals listing takes 1 to 200. */
function approvalsLimit(value: string): number {
  if (!/^[0-9]{1,3}$/.test(value) || Number(value) < 1 || Number(value) > 200)
    throw new InvalidArgumentError('expected a whole number from 1 to 200.');
  return Number(value);
}

const READ_ROLE = 'approver, admin or auditor';

function votes(approval: Approval): string {
  const approvals = approval.decisions.filter((d) => d.decision === 'approve').length;
  return `${approvals} of ${approval.approvals_required}`;
}

/** What undoes a grant of the approval, in words: its runbook, the action that reverses it, or why nothing does. */
function rollbackText(path: Approval['rollback'][number]): string {
  if (path.none !== undefined) return `none: ${path.none} (grant ${path.grant})`;
  const ways = [
    ...(path.runbook === undefined ? [] : [`runbook ${path.runbook}`]),
    ...(path.action === undefined ? [] : [`the action ${path.action}`]),
  ];
  return `${ways.join(', or ')} (grant ${path.grant})`;
}

function printApproval(session: Session, approval: Approval): void {
  session.io.out(
    fields([
      ['approval', approval.id],
      ['status', approval.status],
      ['agent', `${approval.agent} (owner ${approval.owner})`],
      ['audience', approval.audience],
      ['actions', approval.actions.join(' ')],
      ['needs approval', approval.needs_approval.join(' ')],
      ['task', `${approval.task.description} (${approval.task.id})`],
      ['justification', approval.justification],
      ['token ttl', `${approval.ttl} s`],
      ['asked', when(approval.created_at)],
      ['expires', when(approval.expires_at)],
      [
        'approvers',
        `${votes(approval)} approvals${approval.approver_groups.length > 0 ? `, in ${approval.approver_groups.join(', ')}` : ''}${approval.four_eyes ? ', not the owner' : ''}`,
      ],
      ...(approval.rollback.length === 0
        ? [['undone by', 'not declared'] as const]
        : approval.rollback.map((path) => ['undone by', rollbackText(path)] as const)),
      ...approval.decisions.map(
        (d) => ['decision', `${d.decision} by ${d.by} ${relative(d.at)}: ${d.reason}`] as const,
      ),
    ]),
  );
}

function notFound(id: string): string {
  return `no approval '${id}': 'approvals list' shows the pending ones`;
}

function decide(open: () => Session, decision: 'approve' | 'deny') {
  return new Command(decision)
    .argument('<approval-id>', 'the approval id (approvals list shows them)')
    .addOption(reasonOption())
    .addOption(jsonOption())
    .action(async (id, options) => {
      const session = open();
      const approval = await request(
        session,
        {
          method: 'POST',
          path: path`/admin/approvals/${id}`,
          json: { decision, reason: options.reason },
          bearer: session.adminToken('approver'),
        },
        {
          schema: Approval,
          role: 'approver',
          notFound: notFound(id),
          forbidden: 'this approver may not decide it (its group, four-eyes, or a second vote)',
        },
      );
      if (options.json) {
        session.io.out(jsonText(approval));
        return;
      }
      const next =
        approval.status === 'approved'
          ? 'the agent can collect its token now'
          : approval.status === 'pending'
            ? 'it needs more approvals'
            : `it is ${approval.status}`;
      session.io.out(
        `${decision === 'approve' ? 'approved' : 'denied'} ${approval.id}: ${votes(approval)} approvals; ${next}\n`,
      );
    });
}

export function approvalsCommand(open: () => Session): Command {
  const command = new Command('approvals')
    .description("step-up approvals: what waits for a person's decision, and deciding it")
    .addHelpText(
      'after',
      `
Examples:
  npm run cli -- approvals list
  npm run cli -- approvals list --agent demo-agent --all
  npm run cli -- approvals approve "$APPROVAL_ID" --reason "confirmed on the incident bridge"
  npm run cli -- approvals deny "$APPROVAL_ID" --reason "not this account"`,
    );

  command
    .command('list')
    .description('approvals in one status, oldest first, a page at a time (role approver, admin or auditor)')
    .addOption(new Option('--status <status>', 'which ones').choices(STATUSES).default('pending' as const))
    .option('--agent <agent>', "this agent's approvals alone")
    .option('--limit <n>', 'approvals per page, 1 to 200 (default 50)', approvalsLimit)
    .option('--cursor <cursor>', 'start where the previous page stopped: its next_cursor')
    .option('--all', 'follow next_cursor to the end')
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      const bearer = session.adminToken(READ_ROLE);
      const approvals: Approval[] = [];
      let cursor = options.cursor;
      let page: ApprovalPage;
      do {
        const query = { status: options.status, agent: options.agent, cursor, limit: options.limit?.toString() };
        page = await request(
          session,
          { method: 'GET', path: '/admin/approvals', query, bearer },
          { schema: ApprovalPage, role: READ_ROLE },
        );
        approvals.push(...page.approvals);
        cursor = page.next_cursor ?? undefined;
      } while (options.all && cursor !== undefined);
      if (options.json) {
        session.io.out(jsonText(options.all ? { ...page, approvals, next_cursor: null } : page));
        return;
      }
      session.io.out(
        table(
          ['ID', 'AGENT', 'NEEDS', 'AUDIENCE', 'TASK', 'EXPIRES', 'APPROVALS'],
          approvals.map((approval) => [
            approval.id,
            approval.agent,
            approval.needs_approval.join(' '),
            approval.audience,
            approval.task.description,
            relative(approval.expires_at),
            votes(approval),
          ]),
          `no ${options.status} approvals${options.cursor !== undefined || page.next_cursor !== null ? ' on this page' : ''}`,
        ),
      );
      if (page.agents.length > 0) {
        const counts = page.agents.map(({ agent, count }) => `${agent} ${count}`).join(', ');
        session.io.out(`${options.status} by agent: ${counts}\n`);
      }
      if (!options.all && page.next_cursor !== null)
        session.io.out(`more approvals: add --cursor ${page.next_cursor}, or --all\n`);
    });

  command
    .command('show')
    .description('one approval: what it would allow, for which task, and its decisions')
    .argument('<approval-id>', 'the approval id')
    .addOption(jsonOption())
    .action(async (id, options) => {
      const session = open();
      const approval = await request(
        session,
        { method: 'GET', path: path`/admin/approvals/${id}`, bearer: session.adminToken(READ_ROLE) },
        { schema: Approval, role: READ_ROLE, notFound: notFound(id) },
      );
      if (options.json) session.io.out(jsonText(approval));
      else printApproval(session, approval);
    });

  command.addCommand(decide(open, 'approve').description('approve it, as an approver (role approver)'));
  command.addCommand(
    decide(open, 'deny').description('deny it, as an approver: the agent gets access_denied (role approver)'),
  );
  return command;
}
