/**
 * An agent's use of @tessera/agent, written as its users write it, and compiled by the package test
 * (`../package.test.ts`) as ESM and as CommonJS in a project that installed the packed tarball.
 *
 * Usage: `node consumer.js <broker> <private JWK file>`. As the demo agent: a token for the tickets API, a
 * refusal by its code, the task completed; prints what it saw as one line of JSON.
 */
import { AgentError, createTessera, selfSigned } from '@tessera/agent';

async function main(): Promise<void> {
  const [broker, keyFile] = process.argv.slice(2);
  if (broker === undefined || keyFile === undefined) throw new TypeError('usage: consumer <broker> <key file>');
  const tessera = createTessera({ broker, attestation: selfSigned({ agent: 'demo-agent', key: { file: keyFile } }) });
  const task = await tessera.task({ description: 'Read ticket T-1234' });
  try {
    const token = await task.token({ audience: 'https://tickets.example.com', scope: ['tickets:read'] });
    const refusal = await task.token({ audience: 'https://tickets.example.com', scope: 'tickets:delete' }).then(
      () => 'granted',
      (error: unknown) => (error instanceof AgentError ? error.code : 'not an AgentError'),
    );
    console.log(JSON.stringify({ tokenType: token.tokenType, scope: token.scope, refusal }));
  } finally {
    await task.complete();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? `${error.name}: ${error.message}` : error);
  process.exitCode = 1;
});
