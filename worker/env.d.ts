/** Secrets wrangler cannot see in wrangler.toml, added to the generated `Env`. */
interface BrokerSecrets {
  /** Optional secret: a private EC P-256 JWK (with `kid`) to sign with instead of broker-managed keys. */
  SIGNING_KEY?: string;
  /** Optional secret: the HMAC key that signs approval notifications to the approvers' webhook. */
  APPROVAL_WEBHOOK_SECRET?: string;
  /** Optional: `off` has each agent's object send its `/token` records itself (tests); default: the Worker does. */
  AUDIT_HAND_OFF?: string;
}

interface Env extends BrokerSecrets {}

declare namespace Cloudflare {
  interface Env extends BrokerSecrets {}
}
