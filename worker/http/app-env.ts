import type { AuditDraft } from '../audit/record';

/** Hono's environment for every route: the Worker bindings and the variables middleware sets. */
export interface AppEnv {
  Bindings: Env;
  Variables: {
    /** Set on decision endpoints: the audit record being filled in; the error handler completes it. */
    audit?: AuditDraft;
  };
}
