/**
 * Tessera's verifier for downstream APIs: `import { verifyAgentToken, requireAgent } from 'tessera/verify'`.
 * Depends on jose only (Hono for types), so it runs in a Worker, Node or Bun.
 */
export {
  accessTokenHash,
  DPOP_ALGORITHMS,
  type DpopProofCheck,
  ProofReplayCache,
  type VerifiedDpopProof,
  verifyDpopProof,
} from './dpop.ts';
export { type ChallengeError, VerifyError, type VerifyErrorCode } from './errors.ts';
export { type AgentVariables, type RequireAgentOptions, requireAgent } from './hono.ts';
export type { IntrospectionOptions } from './introspection.ts';
export {
  type AgentTokenClaims,
  type DpopRequest,
  TOKEN_ALGORITHMS,
  type TokenAlgorithm,
  type VerifyAgentTokenOptions,
  verifyAgentToken,
} from './token.ts';
