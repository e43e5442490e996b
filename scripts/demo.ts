/**
 * `npm run demo`: plays an agent end to end against a running broker (TESSERA_URL, default
 * http://localhost:8787) and the example tickets API (TICKETS_API_URL, default http://localhost:8788),
 * starting `npm run dev` (its ISSUER set to TESSERA_URL) and `npm run example:api` (trusting the broker's
 * issuer) itself when they do not answer. The agent is `@tessera/agent`; the tickets API verifies offline
 * with `@tessera/verify` (the JWKS and the status lists, no introspection). A step that fails prints the
 * tickets API's error code.
 *
 *  1. the agent's client: a self-signed attestation source (its key file) and a DPoP key,
 *  2. starts a task and gets a token for the tickets API (POST /token),
 *  3. comments on a ticket with it: the tickets API checks the token and its proof,
 *  4. asks for an action outside the policy and shows the refusal,
 *  5. shows that an attestation is single use (a captured one replayed),
 *  6. shows the token useless without the agent's key (as a bearer token, or with a thief's proof),
 *  7. asks for a refund token without DPoP, which policy refuses,
 *  8. asks for a destructive action, which policy holds for a human's approval (step-up),
 *  9. has it approved from the command line, as an approver would, while the client waits,
 * 10. the client collects exactly one token for it, naming the approval and the approver,
 * 11. completes the tickets task: the tickets API refuses its token from the status list, without asking
 *     the broker,
 * 12. works through an MCP server (examples/mcp-server, examples/mcp-agent): discovers its metadata, calls
 *     its tools with the task's token, steps up on `403 insufficient_scope` (approved as in 9), completes.
 *
 * Prints the decoded token, and exits non-zero if any step does not behave as shown.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  AgentError,
  createDpopKey,
  createTessera,
  type DpopKey,
  dpopProof,
  type PendingApproval,
  selfSigned,
  type Task,
} from '@tessera/agent';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { offboard } from '../examples/mcp-agent/agent';
import { IAM_AUDIENCE, startMcpServer } from '../examples/mcp-server/server';

const BROKER = process.env.TESSERA_URL ?? 'http://localhost:8787';
const TICKETS_API = process.env.TICKETS_API_URL ?? 'http://localhost:8788';
const AGENT = 'demo-agent';
const KEY_FILE = fileURLToPath(new URL('./demo/demo-agent.private.jwk.json', import.meta.url));
const TICKETS = 'https://tickets.example.com';
const TICKETS_SCOPE = 'tickets:read tickets:comment';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const run = promisify(execFile);
/** Makes this run's task ids unique, so the demo can run again against the same broker. */
const RUN = Date.now().toString(36);

class DemoFailure extends Error {}

function step(title: string) {
  console.log(`\n== ${title}`);
}

function expectThat(condition: boolean, message: string): void {
  if (!condition) throw new DemoFailure(message);
}

async function answers(url: string): Promise<boolean> {
  try {
    await fetch(url);
    return true;
  } catch {
    return false;
  }
}

const BROKER_METADATA = `${BROKER}/.well-known/oauth-authorization-server`;

/**
 * Starts `npm run <script> -- --port <port>` with `vars` as `--var NAME:VALUE` (over the script's
 * wrangler.toml), and waits until `probe` answers (up to 90 s).
 */
async function startServer(
  script: string,
  base: string,
  probe: string,
  vars: Record<string, string>,
): Promise<ChildProcess> {
  const port = new URL(base).port;
  console.log(`nothing answers at ${base}; starting npm run ${script} ...`);
  const varArgs = Object.entries(vars).flatMap(([name, value]) => ['--var', `${name}:${value}`]);
  const child = spawn('npm', ['run', script, '--', '--port', port, ...varArgs], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    log += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    log += chunk.toString();
  });
  for (let waited = 0; waited < 90_000; waited += 500) {
    if (child.exitCode !== null) break;
    if (await answers(probe)) return child;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  stopServer(child);
  throw new DemoFailure(`npm run ${script} did not start:\n${log.slice(-2000)}`);
}

function stopServer(child: ChildProcess): void {
  if (child.pid !== undefined && child.exitCode === null) {
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
}

/** Calls the example tickets API with `token` as `scheme`, and a DPoP proof of `dpop` when given. */
async function callTicketsApi(
  path: string,
  token: string,
  options: { dpop?: DpopKey; scheme: 'Bearer' | 'DPoP' },
): Promise<{ status: number; body: Record<string, unknown>; challenge: string | null }> {
  const url = `${TICKETS_API}${path}`;
  const proof = options.dpop && (await dpopProof(options.dpop, { method: 'POST', url, accessToken: token }));
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `${options.scheme} ${token}`,
      'content-type': 'application/json',
      ...(proof !== undefined && { dpop: proof }),
    },
    body: JSON.stringify({ text: COMMENT }),
  });
  return answerOf(response);
}

const COMMENT = 'Summary: the customer cannot log in since the 2FA reset; escalated to IAM.';

async function answerOf(response: Response) {
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown>,
    challenge: response.headers.get('www-authenticate'),
  };
}

interface BrokerMetadata {
  issuer: string;
  jwks_uri: string;
}

/** The tickets API's refusal in a failure message: its status, error code and description. */
function apiError(answer: { status: number; body: Record<string, unknown> }): string {
  const { error, error_description: description } = answer.body;
  return `HTTP ${answer.status}${error === undefined ? '' : ` ${String(error)}`}${description === undefined ? '' : `: ${String(description)}`}`;
}

/** What `promise` was refused with, as the agent SDK's stable code; a token where a refusal was expected fails. */
async function refusedCode(promise: Promise<unknown>): Promise<AgentError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AgentError) return error;
    throw error;
  }
  throw new DemoFailure('expected a refusal, got a token');
}

/** POST /token by hand, as the SDK would not: a captured attestation replayed, an approval collected twice. */
async function rawExchange(fields: {
  attestation: string;
  audience: string;
  scope: string;
  task: { description: string; id: string; justification?: string | undefined };
  approvalId?: string | undefined;
}) {
  const response = await fetch(`${BROKER}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      grant_type: TOKEN_EXCHANGE,
      subject_token_type: JWT_TOKEN_TYPE,
      subject_token: fields.attestation,
      audience: fields.audience,
      scope: fields.scope,
      task: fields.task,
      ...(fields.approvalId !== undefined && { approval_id: fields.approvalId }),
    }),
  });
  return answerOf(response);
}

async function play(metadata: BrokerMetadata): Promise<void> {
  step(`1. ${AGENT}'s client (@tessera/agent): a self-signed attestation source and a DPoP key of its own`);
  const attestation = selfSigned({ agent: AGENT, key: { file: KEY_FILE } });
  const dpop = await createDpopKey();
  const tessera = createTessera({ broker: BROKER, attestation, dpop: { key: dpop } });
  console.log(
    `an attestation (single use, aud = ${metadata.issuer}): ${(await attestation.attest({ audience: metadata.issuer })).slice(0, 60)}...`,
  );

  step('2. it starts a task and gets a token for the tickets API (POST /token, a fresh attestation each time)');
  const task = await tessera.task({
    description: 'Summarise ticket T-1234 and post the summary as a comment',
    id: `demo-T-1234-${RUN}`,
  });
  const granted = await task.token({ audience: TICKETS, scope: TICKETS_SCOPE, ttl: 900 });
  const lifetime = Math.round((granted.expiresAt - Date.now()) / 1000);
  console.log(
    JSON.stringify(
      { token_type: granted.tokenType, scope: granted.scope, expires_in: lifetime, task_id: task.id },
      null,
      2,
    ),
  );
  expectThat(granted.tokenType === 'DPoP', 'expected a DPoP-bound token');
  expectThat(lifetime > 590 && lifetime <= 600, 'requested 900 s, expected the grant to cap it at 600 s');

  step(`3. it comments on ticket T-1234: the tickets API (${TICKETS_API}) checks the token and its proof, offline`);
  console.log('header:', JSON.stringify(decodeProtectedHeader(granted.accessToken)));
  console.log('claims:', JSON.stringify(decodeJwt(granted.accessToken), null, 2));
  const commented = await answerOf(
    await task.fetch(`${TICKETS_API}/tickets/T-1234/comments`, {
      method: 'POST',
      audience: TICKETS,
      scope: TICKETS_SCOPE,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: COMMENT }),
    }),
  );
  console.log(`HTTP ${commented.status}`, JSON.stringify(commented.body));
  expectThat(commented.status === 201, `the tickets API did not accept the token (${apiError(commented)})`);
  expectThat(
    commented.body.by === AGENT && commented.body.owner === 'alice@example.com' && commented.body.task === task.id,
    'the tickets API did not see the agent, its owner and its task',
  );
  expectThat(commented.body.boundToKey === true, 'the tickets API did not see the token bound to a key');

  step('4. it asks for an action outside its policy (tickets:delete), and is refused');
  const refused = await refusedCode(task.token({ audience: TICKETS, scope: 'tickets:delete' }));
  console.log(`AgentError ${refused.code} (HTTP ${refused.status}): ${refused.description}`);
  expectThat(refused.code === 'invalid_scope', 'expected invalid_scope');

  step('5. an attestation is single use: one captured and replayed is refused');
  const captured = await attestation.attest({ audience: metadata.issuer });
  const replayTask = { description: 'Read ticket T-1234', id: `demo-replay-${RUN}` };
  const replay = { attestation: captured, audience: TICKETS, scope: 'tickets:read', task: replayTask };
  const first = await rawExchange(replay);
  const replayed = await rawExchange(replay);
  console.log(`first use: HTTP ${first.status}; replayed: HTTP ${replayed.status}`, JSON.stringify(replayed.body));
  expectThat(first.status === 200, `expected the first use to be granted (${apiError(first)})`);
  expectThat(
    replayed.status === 400 && replayed.body.error === 'invalid_grant',
    'expected 400 invalid_grant for a replay',
  );

  step("6. the token is useless without the agent's key (DPoP)");
  console.log(`cnf: ${JSON.stringify(decodeJwt(granted.accessToken).cnf)}`);
  const stolen = await callTicketsApi('/tickets/T-1234/comments', granted.accessToken, { scheme: 'Bearer' });
  console.log(`stolen, as a bearer token: HTTP ${stolen.status}`, stolen.challenge);
  expectThat(stolen.status === 401, `the API accepted a bound token without its proof (${apiError(stolen)})`);
  const thief = await callTicketsApi('/tickets/T-1234/comments', granted.accessToken, {
    scheme: 'DPoP',
    dpop: await createDpopKey(),
  });
  console.log(`stolen, with the thief's own key: HTTP ${thief.status}`, JSON.stringify(thief.body));
  expectThat(thief.status === 401, `the API accepted a proof made with another key (${apiError(thief)})`);

  step('7. refunds move money: policy requires DPoP for that API, so a client without it is refused');
  const bearerOnly = createTessera({ broker: BROKER, attestation, dpop: false });
  const refund = await refusedCode(
    (await bearerOnly.task({ description: 'Refund order 5512, charged twice' })).token({
      audience: 'https://payments.example.com',
      scope: 'payments:refund',
    }),
  );
  console.log(`AgentError ${refund.code} (HTTP ${refund.status}): ${refund.description}`);
  expectThat(refund.code === 'invalid_request', 'expected invalid_request');

  await stepUp(metadata);
  await completed(task, dpop);
  await throughMcp(metadata);
}

/** The MCP scene: the example agent offboards a user through the example MCP server, stepping up on the way. */
async function throughMcp(metadata: BrokerMetadata): Promise<void> {
  step('12. an MCP server takes Tessera tokens: the example agent discovers it, calls its tools, steps up');
  const server = await startMcpServer({ issuer: metadata.issuer });
  try {
    const tessera = createTessera({
      broker: BROKER,
      attestation: selfSigned({ agent: AGENT, key: { file: KEY_FILE } }),
      onApproval: async ({ approvalId, scope }) => {
        console.log(`the server answered 403 insufficient_scope; ${scope} waits for approval ${approvalId}`);
        await approve(approvalId, 'HR offboarding ticket 4711 checked');
      },
    });
    const report = await offboard(tessera, {
      serverUrl: server.url,
      broker: metadata.issuer,
      audience: IAM_AUDIENCE,
      userId: 'jdoe',
    });
    console.log(JSON.stringify(report, null, 2));
    expectThat(report.metadata.resource === IAM_AUDIENCE, 'the MCP server did not name its audience');
    expectThat(JSON.parse(report.after).active === false, 'the MCP server did not disable the user');
  } finally {
    await server.close();
  }
}

/** The step-up scene: a destructive action waits for a human, who approves it from the command line. */
async function stepUp(metadata: BrokerMetadata): Promise<void> {
  const iam = 'https://iam.example.com';
  let pending: PendingApproval | undefined;
  const tessera = createTessera({
    broker: BROKER,
    attestation: selfSigned({ agent: AGENT, key: { file: KEY_FILE } }),
    dpop: false,
    onApproval: async (approval) => {
      pending = approval;
      console.log(JSON.stringify(approval, null, 2));
      step('9. an approver on the security team approves it from the command line, while the client polls');
      await approve(approval.approvalId, 'Confirmed on the INC-4821 bridge');
    },
  });
  const task = await tessera.task({
    description: 'Disable the account jdoe, which is sending phishing mail',
    id: `demo-INC-4821-${RUN}`,
    justification: 'INC-4821: jdoe credentials stolen, phishing in progress',
  });

  step('8. it asks to disable an account: destructive work, so policy holds it for a human (step-up)');
  const token = await task.token({ audience: iam, scope: 'iam:disable-user' });
  expectThat(pending !== undefined, 'expected the client to be told of a pending approval');

  step(`10. the client polled at the broker's ${pending?.interval} s interval and collected exactly one token`);
  const { payload } = await jwtVerify(token.accessToken, createRemoteJWKSet(new URL(metadata.jwks_uri)), {
    issuer: metadata.issuer,
    audience: iam,
    typ: 'at+jwt',
    algorithms: ['ES256'],
  });
  const ttl = (payload.exp ?? 0) - (payload.iat ?? 0);
  console.log('claims:', JSON.stringify({ scope: payload.scope, approval: payload.approval, ttl }));
  const claim = payload.approval as { id?: string; by?: string } | undefined;
  expectThat(
    claim?.id === pending?.approvalId && claim?.by === 'demo-approver',
    'the token does not name the approval and approver',
  );
  const collectedAgain = await rawExchange({
    attestation: await selfSigned({ agent: AGENT, key: { file: KEY_FILE } }).attest({ audience: metadata.issuer }),
    audience: iam,
    scope: 'iam:disable-user',
    task: { description: task.description, id: task.id, justification: task.justification },
    approvalId: pending?.approvalId,
  });
  console.log(`collecting it again: HTTP ${collectedAgain.status}`, JSON.stringify(collectedAgain.body));
  expectThat(
    collectedAgain.status === 400 && collectedAgain.body.error === 'invalid_grant',
    'an approval must be single use',
  );
  await task.complete();
}

/** Approves `approvalId` with the CLI, as the demo approver. */
async function approve(approvalId: string, reason: string): Promise<void> {
  const command = ['run', '--silent', 'cli', '--', 'approvals', 'approve', approvalId, '--reason', reason, '--json'];
  console.log(
    `$ TESSERA_ADMIN_TOKEN=<approver credential> npm ${command.map((word) => (word.includes(' ') ? `"${word}"` : word)).join(' ')}`,
  );
  let stdout: string;
  try {
    ({ stdout } = await run('npm', command, {
      env: { ...process.env, TESSERA_URL: BROKER, TESSERA_ADMIN_TOKEN: await demoApprover() },
    }));
  } catch (error) {
    throw new DemoFailure(`the approval failed: ${(error as { stderr?: string }).stderr ?? String(error)}`);
  }
  const decided = JSON.parse(stdout || '{}') as { status?: string; decisions?: unknown };
  console.log(JSON.stringify({ status: decided.status, decisions: decided.decisions }));
  expectThat(decided.status === 'approved', `the approval answered ${stdout}`);
}

/**
 * The end of the tickets task: completing it revokes its tokens, and the tickets API, which never asks the
 * broker per request, refuses the token once its copy of the status list is renewed (5 s at most, there).
 */
async function completed(task: Task, dpop: DpopKey): Promise<void> {
  step('11. the agent completes the tickets task: the tickets API refuses its token from the status list alone');
  const { accessToken } = await task.token({ audience: TICKETS, scope: TICKETS_SCOPE });
  const { status } = decodeJwt(accessToken) as { status?: { status_list?: { idx: number; uri: string } } };
  console.log(`its entry: ${JSON.stringify(status?.status_list)}`);
  await task.complete();
  const completedAt = Date.now();
  let answer = await callTicketsApi('/tickets/T-1234/comments', accessToken, { scheme: 'DPoP', dpop });
  while (answer.status === 201 && Date.now() - completedAt < 15_000) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    answer = await callTicketsApi('/tickets/T-1234/comments', accessToken, { scheme: 'DPoP', dpop });
  }
  const after = ((Date.now() - completedAt) / 1000).toFixed(1);
  console.log(`refused ${after} s after the completion answered: HTTP ${answer.status}`, answer.challenge);
  expectThat(answer.status === 401, `the tickets API still accepts a finished task's token (${apiError(answer)})`);
  expectThat(/error="invalid_token"/.test(answer.challenge ?? ''), 'expected the refusal to be invalid_token');
}

async function demoApprover(): Promise<string> {
  const file = fileURLToPath(new URL('./demo/admin-credentials.json', import.meta.url));
  return (JSON.parse(await readFile(file, 'utf8')) as { approver: string }).approver;
}

const started: ChildProcess[] = [];
try {
  // A broker the demo starts names itself by the URL it is reached at (the `iss` of its tokens).
  if (!(await answers(BROKER_METADATA))) {
    started.push(await startServer('dev', BROKER, BROKER_METADATA, { ISSUER: BROKER }));
  }
  const metadata = (await (await fetch(BROKER_METADATA)).json()) as BrokerMetadata;
  if (new URL(metadata.issuer).href !== new URL(BROKER).href) {
    console.log(`note: the broker at ${BROKER} names itself ${metadata.issuer} (its ISSUER)`);
  }
  // The tickets API trusts this broker: it discovers the broker's keys from its issuer URL.
  if (!(await answers(TICKETS_API))) {
    started.push(await startServer('example:api', TICKETS_API, TICKETS_API, { TESSERA_ISSUER: metadata.issuer }));
  }
  await play(metadata);
  console.log('\ndemo: every step behaved as shown');
} catch (error) {
  console.error(`\ndemo FAILED: ${error instanceof DemoFailure ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  for (const child of started) stopServer(child);
}
