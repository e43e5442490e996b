/**
 * What every command shares: where its output goes, and the broker it talks to with which credential, from
 * the global flags or the environment (`--url` / `TESSERA_URL`, `--admin-token` / `TESSERA_ADMIN_TOKEN`).
 */
import { createInterface } from 'node:readline/promises';
import { usageError } from './errors';

/** The broker when neither `--url` nor `TESSERA_URL` names one: `npm run dev`. */
export const DEFAULT_URL = 'http://localhost:8787';

/** The terminal and environment a command runs in; tests pass their own. */
export interface Io {
  /** Writes to standard output: results. */
  out(text: string): void;
  /** Writes to standard error: errors, warnings, progress. */
  err(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
  /** Whether a person can answer a question (standard input is a terminal). */
  interactive: boolean;
  /** Asks a question on the terminal and resolves with the answer. */
  ask(question: string): Promise<string>;
  /** Reads all of standard input (for a token given as `-`). */
  readStdin(): Promise<string>;
}

/** The process's own terminal and environment. */
export function processIo(): Io {
  return {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    env: process.env,
    interactive: process.stdin.isTTY === true,
    async ask(question) {
      const terminal = createInterface({ input: process.stdin, output: process.stderr });
      try {
        // Ctrl-C or the end of input is no answer, not an error.
        return await new Promise<string>((resolve) => {
          terminal.on('SIGINT', () => {
            process.stderr.write('\n');
            resolve('');
          });
          terminal.question(question).then(resolve, () => resolve(''));
        });
      } finally {
        terminal.close();
      }
    },
    async readStdin() {
      let text = '';
      for await (const chunk of process.stdin) text += String(chunk);
      return text;
    },
  };
}

/** The global flags, as the root command parses them. */
export interface GlobalOptions {
  url?: string;
  adminToken?: string;
  debug?: true;
  /** Deprecated spelling of `--url`. */
  broker?: string;
  /** Deprecated spelling of `--admin-token`. */
  credential?: string;
}

/** `http://` is allowed only to this machine: anywhere else a credential would cross the network in clear. */
function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * A broker URL as the CLI uses it: http(s), no credentials, query or fragment, no trailing slash.
 *
 * @throws {CliError} a usage error that names where the value came from.
 */
export function parseBrokerUrl(value: string, from = '--url'): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw usageError(`${from} is not a URL: '${value}' (for example ${DEFAULT_URL})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw usageError(`${from} must be an http:// or https:// URL, not ${url.protocol}`);
  if (url.username !== '' || url.password !== '')
    throw usageError(`${from} must not carry a credential: put it in TESSERA_ADMIN_TOKEN instead`);
  if (url.search !== '' || url.hash !== '') throw usageError(`${from} must not have a query or a fragment`);
  return url.href.replace(/\/+$/, '');
}

export class Session {
  readonly io: Io;
  readonly #options: GlobalOptions;
  #url: string | undefined;

  constructor(io: Io, options: GlobalOptions) {
    this.io = io;
    this.#options = options;
  }

  /** Prints a warning on standard error. */
  warn(message: string): void {
    this.io.err(`warning: ${message}\n`);
  }

  /** The broker's base URL: `--url`, else `TESSERA_URL`, else {@link DEFAULT_URL}. */
  get url(): string {
    if (this.#url === undefined) {
      const { url, broker } = this.#options;
      if (url !== undefined) this.#url = url;
      else if (broker !== undefined) {
        this.warn('--broker is deprecated: use --url');
        this.#url = parseBrokerUrl(broker, '--broker');
      } else if (this.io.env.TESSERA_URL) this.#url = parseBrokerUrl(this.io.env.TESSERA_URL, 'TESSERA_URL');
      else this.#url = DEFAULT_URL;
    }
    return this.#url;
  }

  /**
   * Refuses to send a secret (an admin credential, an access token, an attestation) over plain http to
   * anything but this machine.
   */
  checkTransport(): void {
    const url = new URL(this.url);
    if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
      throw usageError(
        `refusing to send a credential over plain http to ${url.host}: use https:// (http is for localhost only)`,
      );
    }
  }

  /**
   * An API's introspection credential: `TESSERA_INTROSPECTION_CREDENTIAL` (no flag: it would show in `ps`).
   * It goes in the `Authorization` header only, and is never printed.
   */
  introspectionCredential(): string {
    const credential = this.io.env.TESSERA_INTROSPECTION_CREDENTIAL?.trim();
    if (!credential) {
      throw usageError(
        "no introspection credential: set TESSERA_INTROSPECTION_CREDENTIAL to the credential of the token's API (npm run cli -- introspection-credential makes one)",
      );
    }
    if (!/^[!-~]+$/.test(credential))
      throw usageError(
        'the introspection credential has a space, a line break or a character it cannot hold: copy it again',
      );
    return credential;
  }

  /**
   * The admin credential: `--admin-token`, else `TESSERA_ADMIN_TOKEN` (then the deprecated `--credential`
   * and `TESSERA_ADMIN_CREDENTIAL`). It goes in the `Authorization` header only, and is never printed.
   *
   * @param role the role the command needs, for the message when there is none.
   */
  adminToken(role: string): string {
    const { adminToken, credential } = this.#options;
    const { TESSERA_ADMIN_TOKEN, TESSERA_ADMIN_CREDENTIAL } = this.io.env;
    let token = adminToken ?? TESSERA_ADMIN_TOKEN;
    if (!token && credential !== undefined) {
      this.warn('--credential is deprecated: use --admin-token, or better TESSERA_ADMIN_TOKEN');
      token = credential;
    }
    if (!token && TESSERA_ADMIN_CREDENTIAL) {
      this.warn('TESSERA_ADMIN_CREDENTIAL is deprecated: set TESSERA_ADMIN_TOKEN');
      token = TESSERA_ADMIN_CREDENTIAL;
    }
    token = token?.trim();
    if (!token) {
      throw usageError(
        `no admin credential: set TESSERA_ADMIN_TOKEN (or pass --admin-token); this needs the ${role} role`,
      );
    }
    // Credentials are printable ASCII; anything else would make fetch fail with a message about the network.
    if (!/^[!-~]+$/.test(token))
      throw usageError('the admin credential has a space, a line break or a character it cannot hold: copy it again');
    return token;
  }
}
