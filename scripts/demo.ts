/**
 * `npm run demo`: plays an agent end to end against a running broker (TESSERA_URL, default
 * http://localhost:8787) and the example tickets API (TICKETS_API_URL, default http://localhost:8788),
 * starting `npm run dev` (its ISSUER set to TESSERA_URL) and `npm run example:api` (trusting the broker's
 * issuer) itself when they do not answer. A step that fails prints the tickets API's error code.
 *
 *  1. makes a self-signed attestation for the demo agent,
 *  2. exchanges it for a token for the tickets API,
 *  3. comments on a ticket: the tickets API (examples/tickets-api) verifies the token with `tessera/verify`,
 *  4. asks for an action outside the policy and shows the refusal,
 *  5. shows that an attestation is single use,
 *  6. binds a token to its own key (DPoP); the API accepts it with a proof and refuses it stolen,
 *  7. asks for a refund token without DPoP, which policy refuses,
 *  8. asks for a destructive action, which policy holds for a human's approval (step-up),
 *  9. has it approved from the command line, as an approver would,
 * 10. collects exactly one token for it, naming the approval and the approver.
 *
 * Prints the decoded token, and exits non-zero if any step does not behave as shown.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, type JWK, jwtVerify } from 'jose';
import { type DpopKey, dpopProof, exchangeToken, newDpopKey, readPrivateJwk, selfSignedAttestation } from './lib/agent';

const BROKER = process.env.TESSERA_URL ?? 'http://localhost:8787';
const TICKETS_API = process.env.TICKETS_API_URL ?? 'http://localhost:8788';
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

/** Calls the example tickets API as the agent: with its token, and a DPoP proof when it has a key. */
async function callTicketsApi(
  path: string,
  token: string,
  options: { dpop?: DpopKey; scheme?: 'Bearer' | 'DPoP' } = {},
): Promise<{ status: number; body: Record<string, unknown>; challenge: string | null }> {
  const url = `${TICKETS_API}${path}`;
  const scheme = options.scheme ?? (options.dpop === undefined ? 'Bearer' : 'DPoP');
  const proof = options.dpop && (await dpopProof(options.dpop, { method: 'POST', url, accessToken: token }));
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `${scheme} ${token}`,
      'content-type': 'application/json',
      ...(proof !== undefined && { dpop: proof }),
    },
    body: JSON.stringify({ text: 'Summary: the customer cannot log in since the 2FA reset; escalated to IAM.' }),
  });
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

async function play(metadata: BrokerMetadata): Promise<void> {
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

  step(`3. it comments on ticket T-1234: the tickets API (${TICKETS_API}) checks the token with tessera/verify`);
  console.log('header:', JSON.stringify(decodeProtectedHeader(accessToken as string)));
  console.log('claims:', JSON.stringify(decodeJwt(accessToken as string), null, 2));
  const commented = await callTicketsApi('/tickets/T-1234/comments', accessToken as string);
  console.log(`HTTP ${commented.status}`, JSON.stringify(commented.body));
  expectThat(commented.status === 201, `the tickets API did not accept the token (${apiError(commented)})`);
  expectThat(
    commented.body.by === AGENT && commented.body.owner === 'alice@example.com' && commented.body.task === task.id,
    'the tickets API did not see the agent, its owner and its task',
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

  await proofOfPossession(metadata.issuer, key);
  await stepUp(metadata, key);
}

/** DPoP: a token bound to a key the agent holds is useless to whoever steals the token alone. */
async function proofOfPossession(issuer: string, key: JWK): Promise<void> {
  step('6. it binds a tickets token to a key of its own (DPoP): the token is useless without that key');
  const dpop = await newDpopKey();
  const bound = await exchangeToken(BROKER, {
    attestation: await selfSignedAttestation(AGENT, key, issuer),
    audience: TICKETS,
    scope: 'tickets:comment',
    task: { description: 'Post the weekly summary on ticket T-1234', id: `demo-T-1234-dpop-${RUN}` },
    dpop,
  });
  expectThat(bound.status === 200, `expected 200, got ${bound.status}: ${JSON.stringify(bound.body)}`);
  const token = String(bound.body.access_token);
  console.log(`token_type: ${String(bound.body.token_type)}, cnf: ${JSON.stringify(decodeJwt(token).cnf)}`);
  expectThat(bound.body.token_type === 'DPoP', 'expected a DPoP-bound token');
  const withProof = await callTicketsApi('/tickets/T-1234/comments', token, { dpop });
  console.log(`with a proof of the key: HTTP ${withProof.status}`, JSON.stringify(withProof.body));
  expectThat(
    withProof.status === 201 && withProof.body.boundToKey === true,
    `the API did not accept the bound token (${apiError(withProof)})`,
  );
  const stolen = await callTicketsApi('/tickets/T-1234/comments', token, { scheme: 'Bearer' });
  console.log(`stolen, as a bearer token: HTTP ${stolen.status}`, stolen.challenge);
  expectThat(stolen.status === 401, `the API accepted a bound token without its proof (${apiError(stolen)})`);
  const thief = await callTicketsApi('/tickets/T-1234/comments', token, { dpop: await newDpopKey() });
  console.log(`stolen, with the thief's own key: HTTP ${thief.status}`, JSON.stringify(thief.body));
  expectThat(thief.status === 401, `the API accepted a proof made with another key (${apiError(thief)})`);

  step('7. refunds move money: policy requires DPoP for that API, so a plain request is refused');
  const refund = await exchangeToken(BROKER, {
    attestation: await selfSignedAttestation(AGENT, key, issuer),
    audience: 'https://payments.example.com',
    scope: 'payments:refund',
    task: { description: 'Refund order 5512, charged twice' },
  });
  console.log(`HTTP ${refund.status}`, JSON.stringify(refund.body));
  expectThat(refund.status === 400 && refund.body.error === 'invalid_request', 'expected 400 invalid_request');
}

/** The step-up scene: a destructive action waits for a human, who approves it from the command line. */
async function stepUp(metadata: BrokerMetadata, key: JWK): Promise<void> {
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

  step('8. it asks to disable an account: destructive work, so policy holds it for a human (step-up)');
  const pending = await ask();
  console.log(`HTTP ${pending.status}`, JSON.stringify(pending.body));
  expectThat(
    pending.status === 400 && pending.body.error === 'authorization_pending',
    'expected authorization_pending',
  );
  const approvalId = pending.body.approval_id;
  const interval = Number(pending.body.interval);
  expectThat(typeof approvalId === 'string' && interval > 0, 'expected an approval_id and a polling interval');

  step('9. an approver on the security team approves it from the command line');
  const command = [
    'run',
    '--silent',
    'cli',
    '--',
    'approvals',
    'approve',
    String(approvalId),
    '--reason',
    'Confirmed on the INC-4821 bridge',
    '--json',
  ];
  console.log(`$ TESSERA_ADMIN_TOKEN=<approver credential> npm ${command.join(' ')}`);
  const approval = spawnSync('npm', command, {
    encoding: 'utf8',
    env: { ...process.env, TESSERA_URL: BROKER, TESSERA_ADMIN_TOKEN: await demoApprover() },
  });
  const decided = JSON.parse(approval.stdout || '{}') as { status?: string; decisions?: unknown };
  console.log(JSON.stringify({ status: decided.status, decisions: decided.decisions }));
  expectThat(approval.status === 0 && decided.status === 'approved', `the approval failed: ${approval.stderr}`);

  step(`10. the agent polls again after the ${interval} s interval and collects exactly one token`);
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
