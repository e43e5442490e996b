/**
 * What an agent's operator does from the shell: make keys and admin credentials, make an attestation, and
 * exchange one for a token, including the step-up flow (pending, approved, collected).
 */
import { readFile } from 'node:fs/promises';
import { Command, Option } from '@commander-js/extra-typings';
import { type DpopKey, dpopProof, selfSigned } from '@tessera/agent';
import { type CryptoKey, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { z } from 'zod';
import { newAdminCredential, parseAdminCredential } from '../../../worker/core/admin-credential';
import { newIntrospectionCredential } from '../../../worker/core/introspection-credential';
import { JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT } from '../../../worker/core/token-request';
import { CliError, usageError } from '../errors';
import { type Answer, fetchFailure, refusal, request } from '../http';
import { jsonOption, positiveInteger, required } from '../options';
import { commandLine, fields, instant, jsonText, relative } from '../render';
import { DEFAULT_URL, type Session } from '../session';

/** How the CLI is run, for the commands it prints to copy. */
export const CLI = ['npm', 'run', 'cli', '--'] as const;

function fileError(path: string, error: unknown): CliError {
  const code = (error as { code?: unknown }).code;
  if (code === 'ENOENT') return usageError(`key file not found: ${path} (make a key pair with: npm run cli -- keygen)`);
  if (code === 'EACCES') return usageError(`cannot read the key file ${path}: permission denied`);
  if (code === 'EISDIR') return usageError(`${path} is a folder, not a key file`);
  return usageError(`cannot read the key file ${path}: ${error instanceof Error ? error.message : String(error)}`);
}

/**
 * A private JWK from a file, as `keygen` prints it (a `_comment` member is ignored), checked to be a key
 * jose can sign with.
 *
 * @throws {CliError} a usage error that names the file and what is wrong with it.
 */
export async function readKeyFile(path: string): Promise<JWK> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw fileError(path, error);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw usageError(`${path} is not JSON: expected the private JWK that keygen prints`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw usageError(`${path} is not a JWK: expected the private JWK that keygen prints`);
  const { _comment, ...jwk } = parsed as JWK & { _comment?: unknown };
  if (typeof jwk.d !== 'string') throw usageError(`${path} holds no private key (no "d"): use the private JWK`);
  if (typeof jwk.kid !== 'string') throw usageError(`${path}: the key has no "kid"; the broker finds keys by kid`);
  try {
    await importJWK(jwk, jwk.alg ?? 'ES256');
  } catch (error) {
    throw usageError(`${path} is not a usable private key: ${error instanceof Error ? error.message : String(error)}`);
  }
  return jwk;
}

/** A DPoP key from a private EC P-256 JWK: the proofs are ES256, and carry only the public part. */
async function dpopKeyFrom(path: string): Promise<DpopKey> {
  const jwk = await readKeyFile(path);
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256')
    throw usageError(`${path}: a DPoP key must be EC P-256 (keygen makes one)`);
  const privateKey = (await importJWK({ ...jwk, alg: 'ES256' }, 'ES256')) as CryptoKey;
  return { privateKey, publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } };
}

/** One `POST /token`, as the CLI prints it whatever it answers. */
interface ExchangeRequest {
  attestation: string;
  audience: string;
  scope: string;
  task: { description: string; id?: string; justification?: string };
  requestedTtl?: number;
  /** Collecting a step-up approval: the `approval_id` of an `authorization_pending` answer. */
  approvalId?: string;
  /** Bind the token to this key with a DPoP proof (RFC 9449). */
  dpop?: DpopKey;
}

/**
 * The RFC 8693 exchange, answered as it came (the agent SDK's task API waits for approvals in one process;
 * the CLI prints each answer, and collects an approval in a later run). With a DPoP key it sends a proof
 * and answers one `use_dpop_nonce` challenge with the nonce it names (RFC 9449 §8).
 */
async function exchangeToken(
  broker: string,
  request: ExchangeRequest,
  nonce?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = `${broker}/token`;
  const proof = request.dpop && (await dpopProof(request.dpop, { method: 'POST', url, nonce }));
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(proof !== undefined && { dpop: proof }) },
    body: JSON.stringify({
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: request.attestation,
      subject_token_type: JWT_TOKEN_TYPE,
      audience: request.audience,
      scope: request.scope,
      task: request.task,
      ...(request.requestedTtl !== undefined && { requested_ttl: request.requestedTtl }),
      ...(request.approvalId !== undefined && { approval_id: request.approvalId }),
    }),
  });
  const body = (await response.json()) as Record<string, unknown>;
  const challenge = response.headers.get('dpop-nonce');
  if (body.error === 'use_dpop_nonce' && challenge !== null && nonce === undefined)
    return exchangeToken(broker, request, challenge);
  return { status: response.status, body };
}

const Metadata = z.object({ issuer: z.string().min(1), token_endpoint: z.string() });

/** The broker's issuer, from its RFC 8414 metadata: an attestation names it as its audience. */
async function brokerIssuer(session: Session): Promise<string> {
  const metadata = await request(
    session,
    { method: 'GET', path: '/.well-known/oauth-authorization-server' },
    { schema: Metadata },
  );
  return metadata.issuer;
}

const Granted = z.object({
  access_token: z.string(),
  token_type: z.string(),
  expires_in: z.number(),
  scope: z.string(),
  task_id: z.string(),
});
const Pending = z.object({
  error: z.literal('authorization_pending'),
  approval_id: z.string(),
  interval: z.number().int().positive(),
  expires_in: z.number().optional(),
  task_id: z.string().optional(),
});
const SlowDown = z.object({ error: z.literal('slow_down'), interval: z.number().int().positive() });

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Approvals expire within this by policy (`approvals.expires_in`): a wait never outlasts it. */
const LONGEST_APPROVAL_MS = 7 * 24 * 3600 * 1000;

/**
 * Polls while the broker answers `authorization_pending` or `slow_down` (OpenID CIBA poll mode), at the
 * interval it gives, until the approval is decided (a token or a refusal) or has expired.
 */
async function waitForDecision(first: Answer, poll: () => Promise<Answer>): Promise<Answer> {
  let answer = first;
  let deadline = Date.now() + LONGEST_APPROVAL_MS;
  for (;;) {
    const pending = Pending.safeParse(answer.body);
    const slow = SlowDown.safeParse(answer.body);
    if (!pending.success && !slow.success) return answer;
    const interval = pending.success ? pending.data.interval : (slow.data?.interval ?? 1);
    if (pending.success && pending.data.expires_in !== undefined)
      deadline = Date.now() + (pending.data.expires_in + interval) * 1000;
    if (Date.now() >= deadline) return answer;
    await sleep(interval * 1000);
    answer = await poll();
  }
}

export function keygenCommand(open: () => Session): Command {
  return new Command('keygen')
    .description('make an ES256 key pair for a self-signed agent (or a DPoP key, or a SIGNING_KEY)')
    .option('--kid <kid>', 'the key id (default: a random UUID)')
    .addHelpText(
      'after',
      `
Prints two lines after comments: the private JWK (give it to the agent, keep it secret) and the public JWK
(add it to the agent's attestation.self_signed.keys in policies/agents.yaml).

Example:
  npm run --silent cli -- keygen --kid triage-bot-1 | sed -n 2p > triage-bot.private.jwk.json`,
    )
    .action(async (options) => {
      const session = open();
      const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
      const meta = { kid: options.kid ?? crypto.randomUUID(), alg: 'ES256', use: 'sig' };
      session.io.out('# private JWK: give it to the agent, keep it secret\n');
      session.io.out(`${JSON.stringify({ ...(await exportJWK(privateKey)), ...meta })}\n`);
      session.io.out('# public JWK: add it to the agent in policies/agents.yaml\n');
      session.io.out(`${JSON.stringify({ ...(await exportJWK(publicKey)), ...meta })}\n`);
    });
}

export function adminCredentialCommand(open: () => Session): Command {
  return new Command('admin-credential')
    .description('make an admin credential, and the entry that lets the broker accept it')
    .addOption(required('--id <id>', 'who holds it: lowercase letters, digits and dashes (alice-oncall)'))
    .addOption(
      new Option('--role <role>', 'what it may do')
        .choices(['admin', 'approver', 'auditor'] as const)
        .default('auditor'),
    )
    .addHelpText(
      'after',
      `
The credential is shown once and stored nowhere: give it to its holder, who sets TESSERA_ADMIN_TOKEN to it.
Add the printed entry under credentials in policies/admins.yaml (an approver may also need groups: [...]).`,
    )
    .action(async (options) => {
      const session = open();
      const { credential, secretSha256 } = await newAdminCredential(options.id);
      if (parseAdminCredential(credential) === undefined)
        throw usageError(
          `--id '${options.id}': use lowercase letters, digits and dashes, up to 64, starting with a letter or digit`,
        );
      session.io.out('# the credential: give it to its holder; it is not stored anywhere\n');
      session.io.out(`${credential}\n`);
      session.io.out('# add to policies/admins.yaml under credentials\n');
      session.io.out(`  - { id: ${options.id}, role: ${options.role}, secret_sha256: ${secretSha256} }\n`);
    });
}

export function introspectionCredentialCommand(open: () => Session): Command {
  return new Command('introspection-credential')
    .description("make an API's introspection credential, and the entry that lets the broker accept it")
    .addOption(
      required('--audience <url>', "the API's audience, exactly as agents ask for it (https://tickets.acme.com)"),
    )
    .addHelpText(
      'after',
      `
The credential is shown once and stored nowhere: give it to the API, which keeps it as a secret
(npx wrangler secret put TESSERA_INTROSPECTION_CREDENTIAL) and passes it as @tessera/verify's
introspection: { credential }. Add the printed entry under apis in policies/apis.yaml.`,
    )
    .action(async (options) => {
      const session = open();
      if (/[\s"'{}[\],#]/.test(options.audience) || options.audience === '')
        throw usageError(`--audience '${options.audience}': give the audience URL, without spaces or quotes`);
      const { credential, secretSha256 } = await newIntrospectionCredential();
      session.io.out('# the credential: give it to the API; it is not stored anywhere\n');
      session.io.out(`${credential}\n`);
      session.io.out('# add to policies/apis.yaml under apis\n');
      session.io.out(`  - { audience: ${options.audience}, introspection_secret_sha256: ${secretSha256} }\n`);
    });
}

export function attestCommand(open: () => Session): Command {
  return new Command('attest')
    .description(
      "print a fresh self-signed attestation for an agent (single use, two minutes; aud = the broker's issuer)",
    )
    .addOption(required('--agent <agent>', 'the agent id, as in policies/agents.yaml'))
    .addOption(required('--key <file>', "the agent's private JWK file (from keygen)"))
    .addHelpText(
      'after',
      `
Example:
  ATTESTATION=$(npm run --silent cli -- attest --agent demo-agent --key scripts/demo/demo-agent.private.jwk.json)`,
    )
    .action(async (options) => {
      const session = open();
      const key = await readKeyFile(options.key);
      const issuer = await brokerIssuer(session);
      session.io.out(`${await selfSigned({ agent: options.agent, key }).attest({ audience: issuer })}\n`);
    });
}

interface TokenOptions {
  agent: string;
  key: string;
  audience: string;
  scope: string;
  task: string;
  justification?: string;
  ttl?: number;
  taskId?: string;
  approvalId?: string;
  dpop?: string;
}

/** The command that collects the token of an approval: the same request, with the task id and approval id. */
function collectCommand(session: Session, options: TokenOptions, taskId: string, approvalId: string): string {
  const words: string[] = [...CLI, 'token'];
  if (session.url !== DEFAULT_URL) words.push('--url', session.url);
  words.push('--agent', options.agent, '--key', options.key, '--audience', options.audience);
  words.push('--scope', options.scope, '--task', options.task);
  if (options.justification !== undefined) words.push('--justification', options.justification);
  if (options.ttl !== undefined) words.push('--ttl', String(options.ttl));
  if (options.dpop !== undefined) words.push('--dpop', options.dpop);
  words.push('--task-id', taskId, '--approval-id', approvalId);
  return commandLine(words);
}

function printGranted(session: Session, options: TokenOptions, granted: z.infer<typeof Granted>): void {
  session.io.out(
    fields([
      ['granted', `a ${granted.token_type} token for ${options.audience}`],
      ['scope', granted.scope],
      ['expires', `in ${granted.expires_in} s (${instant(Date.now() + granted.expires_in * 1000)})`],
      ['task_id', granted.task_id],
      ['access_token', granted.access_token],
    ]),
  );
}

function printPending(session: Session, options: TokenOptions, pending: z.infer<typeof Pending>, taskId: string): void {
  const expires =
    pending.expires_in === undefined ? '' : ` (expires ${relative(Date.now() + pending.expires_in * 1000)})`;
  session.io.out(
    `pending: a person must approve this request before the broker issues its token
approval_id: ${pending.approval_id}${expires}
task_id:     ${taskId}

an approver decides with:
  ${commandLine([...CLI, 'approvals', 'approve', pending.approval_id, '--reason', 'why it is approved'])}
then collect the token (poll no more often than every ${pending.interval} s):
  ${collectCommand(session, options, taskId, pending.approval_id)}
or run the same with --wait, which polls until the approval is decided.
`,
  );
}

export function tokenCommand(open: () => Session): Command {
  return new Command('token')
    .description('exchange a fresh attestation and a task for an access token (POST /token)')
    .addOption(required('--agent <agent>', 'the agent id, as in policies/agents.yaml'))
    .addOption(required('--key <file>', "the agent's private JWK file (from keygen)"))
    .addOption(required('--audience <api>', 'the one API the token is for (https://tickets.example.com)'))
    .addOption(required('--scope <actions>', 'the actions, space-separated ("tickets:read tickets:comment")'))
    .addOption(required('--task <description>', 'what the agent is about to do, in words'))
    .option('--justification <why>', 'why: needed by dual-use actions, recorded in the audit log')
    .option('--ttl <seconds>', 'the lifetime to ask for (policy caps it)', positiveInteger)
    .option('--task-id <id>', 'the task id (default: the broker makes one); to collect an approval, the one it gave')
    .option('--approval-id <id>', 'collect the token of this step-up approval (with the same request and --task-id)')
    .option('--dpop <file>', 'bind the token to this private EC P-256 JWK (DPoP): then it works only with proofs of it')
    .option('--wait', 'when the request needs approval, poll at the interval the broker gives until it is decided')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
An action that needs a person's approval answers "pending" with an approval id and the command that
collects the token once it is approved; or pass --wait to poll until it is decided.

Examples:
  npm run cli -- token --agent demo-agent --key scripts/demo/demo-agent.private.jwk.json \\
    --audience https://tickets.example.com --scope "tickets:read tickets:comment" --task "Summarise T-1234"
  npm run cli -- token --agent demo-agent --key scripts/demo/demo-agent.private.jwk.json \\
    --audience https://iam.example.com --scope iam:disable-user --task "Disable jdoe" \\
    --justification "INC-4821: phishing" --wait`,
    )
    .action(async (options) => {
      const session = open();
      if (options.approvalId !== undefined && options.taskId === undefined)
        throw usageError(
          '--approval-id needs --task-id: the task id the pending answer gave, as the approval is for it',
        );
      const attestation = selfSigned({ agent: options.agent, key: await readKeyFile(options.key) });
      const dpop = options.dpop === undefined ? undefined : await dpopKeyFrom(options.dpop);
      const issuer = await brokerIssuer(session);
      session.checkTransport();
      const ask = async (taskId: string | undefined, approvalId: string | undefined): Promise<Answer> => {
        const exchange: ExchangeRequest = {
          attestation: await attestation.attest({ audience: issuer }),
          audience: options.audience,
          scope: options.scope,
          task: {
            description: options.task,
            ...(taskId !== undefined && { id: taskId }),
            ...(options.justification !== undefined && { justification: options.justification }),
          },
          ...(options.ttl !== undefined && { requestedTtl: options.ttl }),
          ...(approvalId !== undefined && { approvalId }),
          ...(dpop !== undefined && { dpop }),
        };
        try {
          const { status, body } = await exchangeToken(session.url, exchange);
          return { status, body, headers: new Headers() };
        } catch (error) {
          throw fetchFailure(session, 'POST /token', error);
        }
      };

      let answer = await ask(options.taskId, options.approvalId);
      const first = Pending.safeParse(answer.body);
      const taskId = (first.success ? first.data.task_id : undefined) ?? options.taskId;
      const approvalId = first.success ? first.data.approval_id : options.approvalId;
      if (options.wait && approvalId !== undefined && answer.status !== 200) {
        session.io.err(
          `waiting for a decision on approval ${approvalId} (Ctrl-C stops waiting; the approval stays open)\n`,
        );
        answer = await waitForDecision(answer, () => ask(taskId, approvalId));
      }
      const pending = Pending.safeParse(answer.body);

      if (options.json) session.io.out(jsonText(answer.body));
      if (answer.status === 200) {
        const granted = Granted.safeParse(answer.body);
        if (!granted.success)
          throw new CliError(`the answer to POST /token is not what a Tessera broker sends: is ${session.url} one?`);
        if (!options.json) printGranted(session, options, granted.data);
        return;
      }
      if (pending.success) {
        if (!options.json) printPending(session, options, pending.data, taskId ?? '');
        throw new CliError(`no token yet: approval ${pending.data.approval_id} is pending`);
      }
      throw refusal(session, { method: 'POST', path: '/token' }, answer, {
        refused: 'no token',
        forbidden: 'no token: the agent is suspended or the kill switch is engaged',
        unavailable: 'no token: the broker could not reach a store, and refused rather than guess',
      });
    });
}
