/**
 * Admin authentication: a broker credential (`Authorization: Bearer tessera_admin.<id>.<secret>`) or a
 * Cloudflare Access JWT (`Cf-Access-Jwt-Assertion`, verified against the team's certs and mapped to a role
 * in `policies/admins.yaml`). No credential: 401; a credential without the role: 403. Either way the
 * attempt is audited, with the caller's identity once known.
 */
import { createMiddleware } from 'hono/factory';
import { createRemoteJWKSet, type JWTVerifyGetKey, jwtVerify } from 'jose';
import type { AuditDraft } from '../audit/record';
import { claimMatches } from '../core/claim-match';
import { refuse } from '../core/errors';
import { bearerCredential, challenge } from '../http/bearer';
import { type AccessConfig, ADMIN_ROLES, type AdminRole } from '../policy/bundle';
import { loadedPolicy } from '../policy/loaded';
import { matchAdminCredential } from './credentials';

export interface AdminIdentity {
  /** The credential id, or the Access identity's email (or service token common name). */
  id: string;
  role: AdminRole;
  /** Approver groups (from the credential, or the Access rule that matched). */
  groups: string[];
  via: 'credential' | 'cloudflare_access';
}

export type AdminEnv = { Bindings: Env; Variables: { audit: AuditDraft; admin: AdminIdentity } };

const REALM = 'tessera-admin';
let accessCerts: { url: string; getKey: JWTVerifyGetKey } | undefined;

function accessKeys(config: AccessConfig): JWTVerifyGetKey {
  const url = new URL('/cdn-cgi/access/certs', config.teamDomain).href;
  if (accessCerts?.url !== url) accessCerts = { url, getKey: createRemoteJWKSet(new URL(url)) };
  return accessCerts.getKey;
}

/** Verifies an Access JWT and maps its identity to a role; undefined when it does not verify. */
async function accessIdentity(
  assertion: string,
  config: AccessConfig,
): Promise<{ id: string; role?: AdminRole; groups: string[] } | undefined> {
  try {
    const { payload } = await jwtVerify(assertion, accessKeys(config), {
      issuer: config.teamDomain.replace(/\/$/, ''),
      audience: config.audience,
      algorithms: ['RS256'],
      requiredClaims: ['exp', 'iat'],
    });
    const id = typeof payload.email === 'string' ? payload.email : payload.common_name;
    if (typeof id !== 'string' || id === '' || !id.isWellFormed()) return undefined;
    const rule = config.roles.find((candidate) => claimMatches(candidate.match, id));
    return { id, groups: rule?.groups ?? [], ...(rule !== undefined && { role: rule.role }) };
  } catch {
    return undefined;
  }
}

async function identify(
  credential: string | undefined,
  assertion: string | undefined,
): Promise<AdminIdentity | { id?: string }> {
  const { admins } = loadedPolicy().bundle;
  if (credential !== undefined) {
    const stored = await matchAdminCredential(credential, admins.credentials);
    return stored === undefined ? {} : { id: stored.id, role: stored.role, groups: stored.groups, via: 'credential' };
  }
  if (assertion !== undefined && admins.access !== undefined) {
    const identity = await accessIdentity(assertion, admins.access);
    if (identity?.role !== undefined)
      return { id: identity.id, role: identity.role, groups: identity.groups, via: 'cloudflare_access' };
    return identity === undefined ? {} : { id: identity.id };
  }
  return {};
}

/**
 * Requires an admin identity holding one of `roles`; sets it as `c.var.admin` and on the audit record.
 * Runs after `startAudit`, so every refusal here is audited.
 */
export function requireRole(...roles: AdminRole[]) {
  if (roles.length === 0 || roles.some((role) => !ADMIN_ROLES.includes(role))) {
    throw new TypeError(`requireRole needs roles from ${ADMIN_ROLES.join(', ')}`);
  }
  return createMiddleware<AdminEnv>(async function requireRole(c, next) {
    const credential = bearerCredential(c);
    const assertion = c.req.header('cf-access-jwt-assertion');
    if (credential === undefined && assertion === undefined) {
      throw refuse('credential_required', {}, { headers: challenge(REALM) });
    }
    const identity = await identify(credential, assertion);
    if (!('role' in identity)) {
      if (identity.id !== undefined) c.var.audit.actor = identity.id;
      throw refuse(
        identity.id === undefined ? 'credential_invalid' : 'role_required',
        {},
        {
          headers: challenge(REALM, identity.id === undefined ? 'invalid_token' : 'insufficient_scope'),
        },
      );
    }
    Object.assign(c.var.audit, { actor: identity.id, actorRole: identity.role });
    if (!roles.includes(identity.role)) {
      throw refuse(
        'role_required',
        { required: roles },
        {
          headers: challenge(REALM, 'insufficient_scope'),
          description: `this call needs the role ${roles.join(' or ')}; the credential has ${identity.role}`,
        },
      );
    }
    c.set('admin', identity);
    await next();
  });
}
