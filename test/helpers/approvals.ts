/**
 * Step-up approvals: `iam:disable-user` on the IAM API needs one (policies/tessera.yaml). Opening one as the
 * demo agent, polling it, and reading it as an approver.
 */
import { expect } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { adminFetch, bearer } from './admin';
import { nowSeconds } from './clock';
import { IAM } from './demo';
import { type ExchangeFields, exchange } from './requests';

export const DISABLE_USER = 'iam:disable-user';
/** An approval id: a UUID, a dot, and the agent it belongs to. */
export const APPROVAL_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.demo-agent$/;

export interface StepUpTask {
  description: string;
  id?: string;
  justification?: string;
}

/** A fresh incident task that needs `iam:disable-user`, with a written justification. */
export function incidentTask(overrides: Partial<StepUpTask> = {}): StepUpTask {
  return {
    description: 'Disable the account of j.doe, taken over in incident INC-77',
    id: `inc-77-${crypto.randomUUID()}`,
    justification: 'j.doe signed in from two continents within a minute; the SOC confirmed the takeover',
    ...overrides,
  };
}

/** Asks for `iam:disable-user` on the IAM API for `task` (a fresh attestation each time). */
export function requestDisable(task: StepUpTask, extra: ExchangeFields = {}): Promise<Response> {
  return exchange({ audience: IAM, scope: DISABLE_USER, task, ...extra });
}

/** An approval opened by {@link openApproval}. */
export interface Pending {
  id: string;
  task: StepUpTask;
  /** Other fields of the request that opened it (a `requested_ttl`), sent again on every poll. */
  extra: ExchangeFields;
  /** Epoch seconds at which it was opened. */
  openedAt: number;
}

/** Opens an approval and checks the `authorization_pending` answer. */
export async function openApproval(task: StepUpTask = incidentTask(), extra: ExchangeFields = {}): Promise<Pending> {
  const openedAt = nowSeconds();
  const response = await requestDisable(task, extra);
  expect(response.status, await response.clone().text()).toBe(400);
  const body = (await response.json()) as { error: string; approval_id: string };
  expect(body.error).toBe('authorization_pending');
  expect(body.approval_id).toMatch(APPROVAL_ID);
  return { id: body.approval_id, task, extra, openedAt };
}

/** Polls: the same request again, with a fresh attestation and the approval id (and `overrides`). */
export function poll(pending: Pending, overrides: ExchangeFields = {}): Promise<Response> {
  return requestDisable(pending.task, { ...pending.extra, approval_id: pending.id, ...overrides });
}

/** An approval as `/admin/approvals/{id}` answers it. */
export interface ApprovalJson {
  id: string;
  status: string;
  decisions: { by: string; decision: string; reason: string; at: string }[];
  [field: string]: unknown;
}

/** Reads an approval as `credential` (the demo approver by default) and checks the 200. */
export async function readApproval(id: string, credential = creds.approver): Promise<ApprovalJson> {
  const response = await adminFetch(`/admin/approvals/${id}`, { headers: bearer(credential) });
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as ApprovalJson;
}
