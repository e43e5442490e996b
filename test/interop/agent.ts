/** The demo agent, as the interop tests play it: its key, a fresh attestation, a task in the form encoding. */
import { fileURLToPath } from 'node:url';
import { selfSigned } from '@tessera/agent';

export const AGENT = 'demo-agent';
export const TICKETS = 'https://tickets.example.com';
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

const KEY_FILE = fileURLToPath(new URL('../../scripts/demo/demo-agent.private.jwk.json', import.meta.url));
const attestation = selfSigned({ agent: AGENT, key: { file: KEY_FILE } });

/** A fresh single-use attestation of the demo agent for the broker at `broker`. */
export function attest(broker: string): Promise<string> {
  return attestation.attest({ audience: broker });
}

/** The RFC 8693 parameters of a tickets task, with a fresh attestation; `task` as a JSON string. */
export async function exchangeParameters(broker: string, scope = 'tickets:comment'): Promise<Record<string, string>> {
  return {
    subject_token: await attest(broker),
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    audience: TICKETS,
    scope,
    task: JSON.stringify({ description: 'Summarise ticket T-1234 and post the summary as a comment' }),
  };
}
