/**
 * What an admin does from the shell: call `/admin/*` with a credential. Used by the CLI and the demo.
 */

export interface AdminCall {
  broker: string;
  credential: string;
  method: 'GET' | 'PUT' | 'POST';
  path: string;
  body?: unknown;
}

/** Calls an admin endpoint; returns the HTTP status and the parsed JSON body. */
export async function adminCall(call: AdminCall): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${call.broker}${call.path}`, {
    method: call.method,
    headers: {
      authorization: `Bearer ${call.credential}`,
      ...(call.body !== undefined && { 'content-type': 'application/json' }),
    },
    ...(call.body !== undefined && { body: JSON.stringify(call.body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
