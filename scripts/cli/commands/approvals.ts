/** `approvals list|show|approve|deny`: step-up approvals, as an approver sees them (`/admin/approvals`). */
import { Command, Option } from '@commander-js/extra-typings';
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
  decisions: z.array(z.object({ by: z.string(), decision: z.string(), reason: z.string(), at: z.string() })),
});
type Approval = z.infer<typeof Approval>;

const READ_ROLE = 'approver, admin or auditor';

function votes(approval: Approval): string {
  const approvals = approval.decisions.filter((d) => d.decision === 'approve').length;
  return `${approvals} of ${approval.approvals_required}`;
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
  npm run cli -- approvals approve "$APPROVAL_ID" --reason "confirmed on the incident bridge"
  npm run cli -- approvals deny "$APPROVAL_ID" --reason "not this account"`,
    );

  command
    .command('list')
    .description('approvals in one status, newest first (role approver, admin or auditor)')
    .addOption(new Option('--status <status>', 'which ones').choices(STATUSES).default('pending' as const))
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      const answer = await request(
        session,
        {
          method: 'GET',
          path: '/admin/approvals',
          query: { status: options.status },
          bearer: session.adminToken(READ_ROLE),
        },
        { schema: z.object({ approvals: z.array(Approval) }), role: READ_ROLE },
      );
      if (options.json) {
        session.io.out(jsonText(answer));
        return;
      }
      session.io.out(
        table(
          ['ID', 'AGENT', 'NEEDS', 'AUDIENCE', 'TASK', 'EXPIRES', 'APPROVALS'],
          answer.approvals.map((approval) => [
            approval.id,
            approval.agent,
            approval.needs_approval.join(' '),
            approval.audience,
            approval.task.description,
            relative(approval.expires_at),
            votes(approval),
          ]),
          `no ${options.status} approvals`,
        ),
      );
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
