/**
 * One task as Bun and Deno run it with the built @tessera/agent: a call to the test API with a DPoP-bound
 * token of the task (`task.fetch`, a proof of the call), and the task completed.
 */
import type { Tessera } from '@tessera/agent';

export const TICKETS = 'https://tickets.example.com';

/** What the runtime reports back to the test. */
export interface TaskReport {
  /** `navigator.userAgent`: which runtime ran the task. */
  runtime: string;
  taskId: string;
  /** The API's answer to `task.fetch`. */
  status: number;
  body: unknown;
}

/** Runs one task against `api` (served as the tickets API's audience) and completes it. */
export async function runTask(tessera: Tessera, api: string): Promise<TaskReport> {
  const task = await tessera.task({ description: 'Summarise ticket T-1234 and post the summary as a comment' });
  try {
    const response = await task.fetch(`${api}/tickets/T-1234`, { audience: TICKETS, scope: 'tickets:read' });
    return { runtime: navigator.userAgent, taskId: task.id, status: response.status, body: await response.json() };
  } finally {
    await task.complete();
  }
}
