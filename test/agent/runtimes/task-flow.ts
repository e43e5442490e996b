/**
 * One task as every runtime runs it with the built @tessera/agent: a DPoP-bound token from the broker,
 * a call to the test API with it (`task.fetch`, a proof of the call), and the task completed.
 */
import type { Tessera } from '@tessera/agent';

export const TICKETS = 'https://tickets.example.com';

/** What the runtime reports back to the test. */
export interface TaskReport {
  /** `navigator.userAgent`: which runtime ran the task. */
  runtime: string;
  taskId: string;
  tokenType: string;
  accessToken: string;
  /** The API's answer to `task.fetch`. */
  status: number;
  body: unknown;
}

/** Runs one task against `api` (served as the tickets API's audience) and completes it. */
export async function runTask(tessera: Tessera, api: string): Promise<TaskReport> {
  const task = await tessera.task({ description: 'Summarise ticket T-1234 and post the summary as a comment' });
  const response = await task.fetch(`${api}/tickets/T-1234`, { audience: TICKETS, scope: 'tickets:read' });
  const body: unknown = await response.json();
  const { accessToken, tokenType } = await task.token({ audience: TICKETS, scope: 'tickets:read' });
  await task.complete();
  return { runtime: navigator.userAgent, taskId: task.id, tokenType, accessToken, status: response.status, body };
}
