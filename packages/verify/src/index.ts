/**
 * Tessera's verifier for downstream APIs: `import { verifyAgentToken } from '@tessera/verify'`, the Hono
 * middleware from `@tessera/verify/hono`, an MCP server's authorization from `@tessera/verify/mcp`.
 * Depends on jose only, so it runs in a Worker, Node or Bun.
 */
export { isCanonicalJwt } from './compact.js';
export {
  accessTokenHash,
  DPOP_ALGORITHMS,
  DPOP_CLOCK_TOLERANCE_SECONDS,
  DPOP_MAX_AGE_SECONDS,
  type DpopProofCheck,
  ProofReplayCache,
  type VerifiedDpopProof,
  verifyDpopProof,
} from './dpop.js';
export { type ChallengeError, PUBLIC_DESCRIPTIONS, VerifyError, type VerifyErrorCode } from './errors.js';
export type { IntrospectionOptions } from './introspection.js';
export {
  StatusLists,
  type StatusListsOptions,
  type StatusReference,
} from './status-check.js';
export {
  decodeStatusList,
  isStatusBits,
  MAX_STATUS_LIST_BYTES,
  STATUS,
  STATUS_BITS,
  type StatusBits,
  type StatusListClaim,
  type StatusName,
} from './status-list.js';
export {
  type AgentTokenClaims,
  type DpopRequest,
  TOKEN_ALGORITHMS,
  type TokenAlgorithm,
  type VerifyAgentTokenOptions,
  verifyAgentToken,
} from './token.js';
