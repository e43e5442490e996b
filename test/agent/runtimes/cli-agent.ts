/**
 * The task of `task-flow.ts` as a command, for Bun and Deno: `<runtime> cli-agent.ts <broker> <api> <key file>`
 * attests as the demo agent with its key file and prints the task's report as JSON.
 */
import process from 'node:process';
import { createTessera, selfSigned } from '@tessera/agent';
import { runTask } from './task-flow.ts';

const [broker, api, keyFile] = process.argv.slice(2);
if (broker === undefined || api === undefined || keyFile === undefined)
  throw new Error('usage: cli-agent.ts <broker> <api> <key file>');
const tessera = createTessera({ broker, attestation: selfSigned({ agent: 'demo-agent', key: { file: keyFile } }) });
console.log(JSON.stringify(await runTask(tessera, api)));
