/**
 * Announcing a pending approval to the approvers' webhook. The body is JSON; the `Tessera-Signature`
 * header is `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the `APPROVAL_WEBHOOK_SECRET`
 * secret, so a receiver can check who sent it and refuse replays of old messages.
 */
import { hex } from '../core/hex';
import type { RollbackPath } from '../core/policy';

export const SIGNATURE_HEADER = 'Tessera-Signature';
const DELIVERY_TIMEOUT_MS = 5000;

/** The signature header value for `body` sent at `timestamp` (epoch seconds). */
export async function signWebhook(secret: string, timestamp: number, body: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  const mac = await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(`${timestamp}.${body}`));
  return `t=${timestamp},v1=${hex(mac)}`;
}

export interface PendingApprovalMessage {
  type: 'approval.pending';
  approval: {
    id: string;
    agent: string;
    owner: string;
    audience: string;
    actions: string[];
    needs_approval: string[];
    task: { id: string; description: string; hash: string };
    justification: string | null;
    ttl: number;
    expires_at: string;
    approvals_required: number;
    approver_groups: string[];
    four_eyes: boolean;
    /** What undoes each grant that needs the approval, or why nothing does. */
    rollback: RollbackPath[];
  };
  /** Where an approver decides: `POST` with `{ decision, reason }` and an approver credential. */
  decide_url: string;
}

export type Delivery = { delivered: true; status: number } | { delivered: false; error: string };

/** POSTs a signed message; anything but a 2xx within 5 s is a failed delivery (to be retried). */
export async function deliverWebhook(
  url: string,
  secret: string,
  message: PendingApprovalMessage,
  now: number,
): Promise<Delivery> {
  const body = JSON.stringify(message);
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: await signWebhook(secret, now, body) },
      body,
      signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
    });
    await response.body?.cancel();
    return response.ok
      ? { delivered: true, status: response.status }
      : { delivered: false, error: `HTTP ${response.status}` };
  } catch (error) {
    return { delivered: false, error: error instanceof Error ? `${error.name}: ${error.message}` : 'fetch failed' };
  }
}
