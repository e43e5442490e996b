/**
 * @tessera/agent: the agent's side of Tessera. Attest, get a short-lived token per task (DPoP-bound by
 * default), wait for a human's step-up approval where policy asks for one, call MCP servers with the task's
 * token (`task.mcpFetch`), and complete the task.
 */
export {
  type AttestationContext,
  type AttestationSource,
  type GitHubActionsOptions,
  githubActions,
  kubernetes,
  type OidcTokenOptions,
  oidcToken,
  type SelfSignedKey,
  type SelfSignedOptions,
  selfSigned,
  spiffeJwtSvid,
} from './attestation.js';
export { createDpopKey, type DpopKey, dpopProof, type ProofRequest } from './dpop.js';
export { AgentError, type AgentErrorCode, type AgentErrorDetails } from './errors.js';
export type { McpFetch, McpFetchOptions } from './mcp.js';
export type { PendingApproval, Task, TaskFetchInit, TaskToken, TokenRequest } from './task.js';
export { createTessera, type TaskOptions, Tessera, type TesseraOptions } from './tessera.js';
