/**
 * Attestation sources: where the agent's proof of who it is comes from, asked anew for every exchange
 * (an attestation is single use). Self-signed keys, GitHub Actions OIDC, Kubernetes projected tokens,
 * SPIFFE JWT-SVIDs and any OIDC token, from a file or a callback.
 */
import { type CryptoKey, importJWK, type JWK, SignJWT } from 'jose';
import { AgentError } from './errors.js';

/** What a source is told when asked for an attestation. */
export interface AttestationContext {
  /** The broker's issuer URL: the audience every attestation must name. */
  audience: string;
  signal?: AbortSignal | undefined;
}

/** Produces one attestation JWT per call; {@link TesseraOptions.attestation} takes one. */
export interface AttestationSource {
  /** What kind of source this is, for logs: `self_signed`, `github_actions`, `kubernetes`, `spiffe`, `oidc`. */
  readonly kind: string;
  attest(context: AttestationContext): Promise<string>;
}

/** Where a self-signed source finds its private key. */
export type SelfSignedKey = JWK | { file: string } | { env: string } | { key: CryptoKey; kid: string; alg?: string };

/** Options of {@link selfSigned}. */
export interface SelfSignedOptions {
  /** The agent's id in `policies/agents.yaml`: the attestation's `iss` and `sub`. */
  agent: string;
  /** The private key whose public half is registered for the agent (with its `kid`). */
  key: SelfSignedKey;
  /** Seconds the attestation is valid; default 120. */
  lifetime?: number;
}

interface SigningKey {
  key: CryptoKey | Uint8Array;
  kid: string;
  alg: string;
}

/** The minimum of `node:fs/promises` that the file sources need, where the runtime has it. */
interface FileSystem {
  readFile(path: string, encoding: 'utf8'): Promise<string>;
}

/** Held in a variable so that bundlers for runtimes without a file system leave the import alone. */
const FS_MODULE = 'node:fs/promises';

/** Reads a text file: Node, Bun and Deno have `node:fs/promises`; a Worker has no files to read. */
async function readText(path: string, kind: string): Promise<string> {
  try {
    const fs = (await import(FS_MODULE)) as FileSystem;
    return await fs.readFile(path, 'utf8');
  } catch (cause) {
    throw new AgentError('attestation_unavailable', `${kind}: cannot read ${path}`, { cause });
  }
}

/** An environment variable, where the runtime has `process.env` (Node, Bun, Deno, Workers with nodejs_compat). */
function environment(name: string): string | undefined {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
}

function parsePrivateJwk(text: string, where: string): JWK {
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch (cause) {
    throw new TypeError(`${where}: not JSON`, { cause });
  }
  if (typeof jwk !== 'object' || jwk === null) throw new TypeError(`${where}: not a JWK`);
  return jwk as JWK;
}

async function signingKey(source: SelfSignedKey): Promise<SigningKey> {
  if ('key' in source) return { key: source.key, kid: source.kid, alg: source.alg ?? 'ES256' };
  let jwk: JWK;
  if ('file' in source && typeof source.file === 'string')
    jwk = parsePrivateJwk(await readText(source.file, 'self_signed'), source.file);
  else if ('env' in source && typeof source.env === 'string') {
    const text = environment(source.env);
    if (text === undefined) throw new TypeError(`${source.env} is not set`);
    jwk = parsePrivateJwk(text, source.env);
  } else jwk = source as JWK;
  if (typeof jwk.d !== 'string' || typeof jwk.kid !== 'string') throw new TypeError('not a private JWK with a kid');
  const alg = jwk.alg ?? 'ES256';
  return { key: await importJWK(jwk, alg), kid: jwk.kid, alg };
}

/**
 * A self-signed attestation (`iss` = `sub` = the agent, `aud` = the broker, a fresh `jti`), signed with a key
 * registered for the agent in `policies/agents.yaml`. The key is read once, on first use.
 *
 * @example
 * const attestation = selfSigned({ agent: 'demo-agent', key: { file: './demo-agent.private.jwk.json' } });
 * const tessera = createTessera({ broker: 'https://tessera.example.com', attestation });
 */
export function selfSigned(options: SelfSignedOptions): AttestationSource {
  const lifetime = options.lifetime ?? 120;
  let loaded: Promise<SigningKey> | undefined;
  return {
    kind: 'self_signed',
    async attest({ audience }) {
      loaded ??= signingKey(options.key);
      const { key, kid, alg } = await loaded.catch((error: unknown) => {
        loaded = undefined;
        throw error;
      });
      const issuedAt = Math.floor(Date.now() / 1000);
      const claims = { iss: options.agent, sub: options.agent, aud: audience, jti: crypto.randomUUID() };
      return new SignJWT({ ...claims, iat: issuedAt, exp: issuedAt + lifetime })
        .setProtectedHeader({ alg, kid })
        .sign(key);
    },
  };
}

/** A token file's content, trimmed; a missing or empty file is `attestation_unavailable`. */
async function tokenFile(path: string, kind: string): Promise<string> {
  const token = (await readText(path, kind)).trim();
  if (token === '') throw new AgentError('attestation_unavailable', `${kind}: ${path} is empty`);
  return token;
}

/** Options of {@link githubActions}; both default to what the runner sets when the job has `id-token: write`. */
export interface GitHubActionsOptions {
  /** Default: the `ACTIONS_ID_TOKEN_REQUEST_URL` environment variable. */
  requestUrl?: string;
  /** Default: the `ACTIONS_ID_TOKEN_REQUEST_TOKEN` environment variable. */
  requestToken?: string;
  /** The `fetch` to ask the runner with; default the global one. */
  fetch?: typeof fetch;
}

/**
 * GitHub Actions OIDC: asks the runner for a fresh ID token with the broker as its `audience`, for every
 * exchange. The job needs `permissions: id-token: write`.
 *
 * @example
 * const tessera = createTessera({ broker: 'https://tessera.example.com', attestation: githubActions() });
 */
export function githubActions(options: GitHubActionsOptions = {}): AttestationSource {
  return {
    kind: 'github_actions',
    async attest({ audience, signal }) {
      const requestUrl = options.requestUrl ?? environment('ACTIONS_ID_TOKEN_REQUEST_URL');
      const requestToken = options.requestToken ?? environment('ACTIONS_ID_TOKEN_REQUEST_TOKEN');
      if (requestUrl === undefined || requestToken === undefined)
        throw new TypeError('no ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN: does the job have id-token: write?');
      const url = new URL(requestUrl);
      url.searchParams.set('audience', audience);
      let value: unknown;
      try {
        const response = await (options.fetch ?? fetch)(url, {
          headers: { authorization: `Bearer ${requestToken}`, accept: 'application/json' },
          ...(signal !== undefined && { signal }),
        });
        if (!response.ok) throw new Error(`the runner answered ${response.status}`);
        value = ((await response.json()) as { value?: unknown }).value;
      } catch (cause) {
        throw new AgentError('attestation_unavailable', 'github_actions: no ID token from the runner', { cause });
      }
      if (typeof value !== 'string' || value === '')
        throw new AgentError('attestation_unavailable', 'github_actions: the runner sent no token');
      return value;
    },
  };
}

/**
 * A Kubernetes projected service-account token, read from its file at every exchange (the kubelet renews
 * it). Project it with the broker's issuer URL as `audience`.
 *
 * @example
 * const attestation = kubernetes({ path: '/var/run/secrets/tokens/tessera' });
 */
export function kubernetes(options: { path: string }): AttestationSource {
  return { kind: 'kubernetes', attest: () => tokenFile(options.path, 'kubernetes') };
}

/**
 * A SPIFFE JWT-SVID from the file spiffe-helper writes (`jwt_svid_file_name`), read at every exchange.
 * Configure spiffe-helper with the broker's issuer URL as the SVID's audience.
 *
 * @example
 * const attestation = spiffeJwtSvid({ path: '/run/spiffe/tessera.jwt' });
 */
export function spiffeJwtSvid(options: { path: string }): AttestationSource {
  return { kind: 'spiffe', attest: () => tokenFile(options.path, 'spiffe') };
}

/** Options of {@link oidcToken}: a file to read, or a function that returns a fresh token. */
export type OidcTokenOptions = { file: string } | { token: (context: AttestationContext) => string | Promise<string> };

/**
 * Any OIDC token from an issuer the broker trusts: read from a file, or returned by a callback, at every
 * exchange.
 *
 * @example
 * const attestation = oidcToken({ token: ({ audience }) => myIdentityProvider.mint({ audience }) });
 */
export function oidcToken(options: OidcTokenOptions): AttestationSource {
  if ('file' in options) return { kind: 'oidc', attest: () => tokenFile(options.file, 'oidc') };
  return {
    kind: 'oidc',
    async attest(context) {
      let token: unknown;
      try {
        token = await options.token(context);
      } catch (cause) {
        throw new AgentError('attestation_unavailable', 'oidc: the token callback failed', { cause });
      }
      if (typeof token !== 'string' || token === '')
        throw new AgentError('attestation_unavailable', 'oidc: the token callback returned no token');
      return token;
    },
  };
}
