import { createTessera, selfSigned } from '@tessera/agent';

const tessera = createTessera({
  broker: process.env.TESSERA_URL ?? 'http://localhost:8787',
  attestation: selfSigned({ agent: 'demo-agent', key: { file: 'scripts/demo/demo-agent.private.jwk.json' } }),
});

await using task = await tessera.task({ description: 'Summarise ticket T-1234 and post the summary as a comment' });
const token = await task.token({ audience: 'https://tickets.example.com', scope: 'tickets:read tickets:comment' });
console.log(`a ${token.tokenType} token for ${token.audience} (${token.scope}), task ${task.id}`);
// task.fetch(url, { scope }) sends it with a proof of the task's key; leaving this block completes the task.
