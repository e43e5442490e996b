/**
 * The part of panva's `oidc-provider` (which ships no type declarations) that the benchmark's peer uses.
 * The configuration stays a plain record: its shape is the library's documented one.
 */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    /** A Node request listener serving every endpoint. */
    callback(): (request: IncomingMessage, response: ServerResponse) => void;
  }

  export const errors: {
    InvalidTarget: new (description?: string) => Error;
  };
}
