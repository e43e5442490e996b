/**
 * `npm run demo`: plays an agent end to end against a running broker (TESSERA_URL, default
 * http://localhost:8787), or starts `npm run dev` itself when none answers.
 *
 *  1. makes a self-signed attestation for the demo agent,
 *  2. exchanges it for a token for the tickets API,
 *  3. verifies the token against the broker's JWKS, as a downstream API would,
 *  4. asks for an action outside the policy and shows the refusal,
 *  5. shows that an attestation is single use,
 *  6. asks for a destructive action, which policy holds for a human's approval (step-up),
 *  7. has it approved from the command line, as an approver would,
 *  8. collects exactly one token for it, naming the approval and the approver.
 *
 * Prints the decoded token, and exits non-zero if any step does not behave as shown.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, decodeProtectedHeader, type JWK, jwtVerify } from 'jose';
import { exchangeToken, readPrivateJwk, selfSignedAttestation } from './lib/agent';

const BROKER = process.env.TESSERA_URL ?? 'http://localhost:8787';
const AGENT = 'demo-agent';
const KEY_FILE = fileURLToPath(new URL('./demo/demo-agent.private.jwk.json', import.meta.url));
const TICKETS = 'https://tickets.example.com';
/** Makes this run's task ids unique, so the demo can run again against the same broker. */
const RUN = Date.now().toString(36);

class DemoFailure extends Error {}

function step(title: string) {
  console.log(`\n== ${title}`);
}

function expectThat(condition: boolean, message: string): void {
  if (!condition) throw new DemoFailure(message);
}

async function brokerAnswers(): Promise<boolean> {
  try {
    return (await fetch(`${BROKER}/.well-known/oauth-authorization-server`)).ok;
  } catch {
    return false;
  }
}

/** Starts `npm run dev` on the broker's port and waits until it answers (up to 90 s). */
async function startBroker(): Promise<ChildProcess> {
  const port = new URL(BROKER).port || '8787';
  console.log(`no broker at ${BROKER}; starting one with npm run dev ...`);
  const child = spawn('npm', ['run', 'dev', '--', '--port', port], {
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
    if (await brokerAnswers()) return child;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  stopBroker(child);
  throw new DemoFailure(`the broker did not start:\n${log.slice(-2000)}`);
}

function stopBroker(child: ChildProcess): void {
  if (child.pid !== undefined && child.exitCode === null) {
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
}

async function play(): Promise<void> {
  const metadata = (await (await fetch(`${BROKER}/.well-known/oauth-authorization-server`)).json()) as {
    issuer: string;
    jwks_uri: string;
  };
  const key = await readPrivateJwk(KEY_FILE);

  step(`1. ${AGENT} attests who it is (self-signed, single use, aud = ${metadata.issuer})`);
  const attestation = await selfSignedAttestation(AGENT, key, metadata.issuer);
  console.log(`${attestation.slice(0, 60)}...`);

  step('2. it exchanges the attestation and its task for a token (POST /token)');
  const task = { description: 'Summarise ticket T-1234 and post the summary as a comment', id: 'demo-T-1234' };
  const granted = await exchangeToken(BROKER, {
    attestation,
    audience: TICKETS,
    scope: 'tickets:read tickets:comment',
    task,
    requestedTtl: 900,
  });
  expectThat(granted.status === 200, `expected 200, got ${granted.status}: ${JSON.stringify(granted.body)}`);
  const { access_token: accessToken, ...answer } = granted.body;
  console.log(JSON.stringify(answer, null, 2));
  expectThat(typeof accessToken === 'string', 'no access_token in the answer');
  expectThat(answer.expires_in === 600, 'requested 900 s, expected the grant to cap it at 600 s');

  step('3. the tickets API verifies it against the broker JWKS');
  const { payload, protectedHeader } = await jwtVerify(
    accessToken as string,
    createRemoteJWKSet(new URL(metadata.jwks_uri)),
    {
      issuer: metadata.issuer,
      audience: TICKETS,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    },
  );
  console.log('header:', JSON.stringify(decodeProtectedHeader(accessToken as string)));
  console.log('claims:', JSON.stringify(payload, null, 2));
  const actions = String(payload.scope).split(' ');
  expectThat(protectedHeader.typ === 'at+jwt', 'token typ is not at+jwt');
  expectThat(actions.includes('tickets:comment'), 'token does not carry tickets:comment');
  expectThat(
    payload.sub === AGENT && payload.owner === 'alice@example.com',
    'token does not name the agent and its owner',
  );
  expectThat((payload.task as { id?: string }).id === task.id, 'token is not bound to the task');
  console.log(
    `verified: ${payload.sub} may ${actions.join(', ')} on ${payload.aud} until ${new Date((payload.exp ?? 0) * 1000).toISOString()}`,
  );

  step('4. it asks for an action outside its policy (tickets:delete), and is refused');
  const refused = await exchangeToken(BROKER, {
    attestation: await selfSignedAttestation(AGENT, key, metadata.issuer),
    audience: TICKETS,
    scope: 'tickets:delete',
    task: { description: 'Delete ticket T-1234' },
  });
  console.log(`HTTP ${refused.status}`, JSON.stringify(refused.body));
  expectThat(refused.status === 400 && refused.body.error === 'invalid_scope', 'expected 400 invalid_scope');
  expectThat(refused.body.access_token === undefined, 'a refusal must not carry a token');

  step('5. the same attestation cannot be used twice');
  const replayed = await exchangeToken(BROKER, { attestation, audience: TICKETS, scope: 'tickets:read', task });
  console.log(`HTTP ${replayed.status}`, JSON.stringify(replayed.body));
  expectThat(
    replayed.status === 400 && replayed.body.error === 'invalid_grant',
    'expected 400 invalid_grant for a replay',
  );

  await stepUp(metadata, key);
}

/** The step-up scene: a destructive action waits for a human, who approves it from the command line. */
async function stepUp(metadata: { issuer: string; jwks_uri: string }, key: JWK): Promise<void> {
  const iam = 'https://iam.example.com';
  const ask = async (approvalId?: string) =>
    exchangeToken(BROKER, {
      attestation: await selfSignedAttestation(AGENT, key, metadata.issuer),
      audience: iam,
      scope: 'iam:disable-user',
      task: {
        description: 'Disable the account jdoe, which is sending phishing mail',
        id: `demo-INC-4821-${RUN}`,
        justification: 'INC-4821: jdoe credentials stolen, phishing in progress',
      },
      ...(approvalId !== undefined && { approvalId }),
    });

  step('6. it asks to disable an account: destructive work, so policy holds it for a human (step-up)');
  const pending = await ask();
  console.log(`HTTP ${pending.status}`, JSON.stringify(pending.body));
  expectThat(
    pending.status === 400 && pending.body.error === 'authorization_pending',
    'expected authorization_pending',
  );
  const approvalId = pending.body.approval_id;
  const interval = Number(pending.body.interval);
  expectThat(typeof approvalId === 'string' && interval > 0, 'expected an approval_id and a polling interval');

  step('7. an approver on the security team approves it from the command line');
  const command = [
    'run',
    '--silent',
    'cli',
    '--',
    'approve',
    String(approvalId),
    '--reason',
    'Confirmed on the INC-4821 bridge',
  ];
  console.log(`$ TESSERA_ADMIN_CREDENTIAL=<approver credential> npm ${command.join(' ')}`);
  const approval = spawnSync('npm', command, {
    encoding: 'utf8',
    env: { ...process.env, TESSERA_URL: BROKER, TESSERA_ADMIN_CREDENTIAL: await demoApprover() },
  });
  const decided = JSON.parse(approval.stdout || '{}') as { status?: string; decisions?: unknown };
  console.log(JSON.stringify({ status: decided.status, decisions: decided.decisions }));
  expectThat(approval.status === 0 && decided.status === 'approved', `the approval failed: ${approval.stderr}`);

  step(`8. the agent polls again after the ${interval} s interval and collects exactly one token`);
  await new Promise((resolve) => setTimeout(resolve, interval * 1000));
  const collected = await ask(String(approvalId));
  expectThat(collected.status === 200, `expected 200, got ${collected.status}: ${JSON.stringify(collected.body)}`);
  const { payload } = await jwtVerify(
    String(collected.body.access_token),
    createRemoteJWKSet(new URL(metadata.jwks_uri)),
    {
      issuer: metadata.issuer,
      audience: iam,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    },
  );
  const ttl = (payload.exp ?? 0) - (payload.iat ?? 0);
  console.log('claims:', JSON.stringify({ scope: payload.scope, approval: payload.approval, ttl }));
  const claim = payload.approval as { id?: string; by?: string } | undefined;
  expectThat(
    claim?.id === approvalId && claim?.by === 'demo-approver',
    'the token does not name the approval and approver',
  );

  const again = await ask(String(approvalId));
  console.log(`collecting it again: HTTP ${again.status}`, JSON.stringify(again.body));
  expectThat(again.status === 400 && again.body.error === 'invalid_grant', 'an approval must be single use');
}

async function demoApprover(): Promise<string> {
  const file = fileURLToPath(new URL('./demo/admin-credentials.json', import.meta.url));
  return (JSON.parse(await readFile(file, 'utf8')) as { approver: string }).approver;
}

let broker: ChildProcess | undefined;
try {
  if (!(await brokerAnswers())) broker = await startBroker();
  await play();
  console.log('\ndemo: every step behaved as shown');
} catch (error) {
  console.error(`\ndemo FAILED: ${error instanceof DemoFailure ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  if (broker !== undefined) stopBroker(broker);
}
