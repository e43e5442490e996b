/**
 * The rollback path of a destructive action reaches the approver: `disable-user-after-approval` declares the
 * runbook that undoes it (`@rollback` in policies/grants.cedar), and the approval it opens shows it in
 * `GET /admin/approvals/{id}` and in the listing, and the audit records keep it: the record that opened the
 * approval and the record of the approver's decision. (The webhook's message: test/approvals/webhook.test.ts.)
 *
 * The clock runs a day ahead, as in step-up.test.ts, so no webhook delivery runs behind the tests' back.
 */
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { adminFetch, bearer } from '../helpers/admin';
import { openApproval, readApproval } from '../helpers/approvals';
import { auditRecords, detailOf, sendAudited } from '../helpers/audit';
import { useForwardClock } from '../helpers/clock';

const ROLLBACK = [{ grant: 'disable-user-after-approval', runbook: 'https://runbooks.example.com/iam/enable-user' }];

useForwardClock(24 * 3600 * 1000);

describe('the rollback path of an approval', () => {
  it('is shown to the approver when the approval is read and listed', async () => {
    const pending = await openApproval();
    expect((await readApproval(pending.id)).rollback).toEqual(ROLLBACK);

    await auditRecords();
    const response = await adminFetch('/admin/approvals?agent=demo-agent&limit=200', {
      headers: bearer(creds.approver),
    });
    const { approvals } = (await response.json()) as { approvals: { id: string; rollback: unknown }[] };
    expect(approvals.find((approval) => approval.id === pending.id)?.rollback).toEqual(ROLLBACK);
  });

  it('is kept in the record that opened the approval and in the record of its decision', async () => {
    const pending = await openApproval();
    const opened = (await auditRecords()).find(
      (record) => record.target === `approval:${pending.id}` && record.reason === 'approval_required',
    );
    expect(detailOf(opened)).toMatchObject({ approvalId: pending.id, requirement: { rollback: ROLLBACK } });

    const { response, audit } = await sendAudited(() =>
      adminFetch(`/admin/approvals/${pending.id}`, {
        method: 'POST',
        body: { decision: 'deny', reason: 'the runbook is not ready' },
        headers: bearer(creds.approver),
      }),
    );
    expect(response.status, await response.clone().text()).toBe(200);
    expect(audit).toMatchObject({ event: 'admin.approval.decide', decision: 'granted' });
    expect(detailOf(audit)).toEqual({ decision: 'deny', status: 'denied', rollback: ROLLBACK });
  });
});
