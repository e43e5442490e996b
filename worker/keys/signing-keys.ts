/**
 * The broker's signing keys: generated on first use, rotated by an alarm on the schedule in
 * `keys/rotation.ts`, stored only in this Durable Object (one instance, named `global`).
 */
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { SIGNING_ALG } from '../core/access-token';
import { MeteredObject } from '../durable/meter';
import { type PolicyBundle, TTL_CEILING_SECONDS } from '../policy/bundle';
import { loadedPolicy } from '../policy/loaded';
import {
  currentKey,
  type KeyRecord,
  type KeyWindow,
  nextChange,
  planKeys,
  publishedKeys,
  type RotationConfig,
} from './rotation';

const STORAGE_KEY = 'keys';

export interface ActiveKey {
  kid: string;
  privateJwk: JWK;
  /** Epoch seconds after which this key must not sign. */
  notAfter: number;
}

export interface PublishedJwks {
  keys: JWK[];
  /** Epoch seconds of the next rotation or removal: verifiers must not cache past it. */
  nextChange: number;
}

function rotationConfig(bundle: PolicyBundle): RotationConfig {
  return {
    period: bundle.settings.signingKeys.rotationPeriod,
    retention: TTL_CEILING_SECONDS + bundle.settings.attestations.clockSkew,
  };
}

async function createKey(window: KeyWindow): Promise<KeyRecord> {
  const { publicKey, privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const kid = crypto.randomUUID();
  const meta = { kid, alg: SIGNING_ALG, use: 'sig' };
  return {
    kid,
    privateJwk: { ...(await exportJWK(privateKey)), ...meta },
    publicJwk: { ...(await exportJWK(publicKey)), ...meta },
    ...window,
  };
}

export class SigningKeys extends MeteredObject {
  #keys: KeyRecord[] = [];
  readonly #config = rotationConfig(loadedPolicy().bundle);

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void this.ctx.blockConcurrencyWhile(async () => {
      this.#keys = (await this.ctx.storage.get<KeyRecord[]>(STORAGE_KEY)) ?? [];
    });
  }

  /** Brings the key set up to `now`: creates missing keys, drops expired ones, re-arms the alarm. */
  async #refresh(now: number): Promise<void> {
    const plan = planKeys(this.#keys, now, this.#config);
    if (plan.create.length > 0 || plan.keep.length !== this.#keys.length) {
      // Serialised: two requests must not both create a key for the same window.
      await this.ctx.blockConcurrencyWhile(async () => {
        const again = planKeys(this.#keys, now, this.#config);
        const created = await Promise.all(again.create.map(createKey));
        this.#keys = [...again.keep, ...created].sort((a, b) => a.notBefore - b.notBefore);
        await this.ctx.storage.put(STORAGE_KEY, this.#keys);
      });
    }
    const alarmAt = nextChange(this.#keys, now, this.#config);
    if (alarmAt !== undefined && (await this.ctx.storage.getAlarm()) !== alarmAt * 1000) {
      await this.ctx.storage.setAlarm(alarmAt * 1000);
    }
  }

  /** The key that signs now, generating the first keys on first use. */
  async activeKey(): Promise<ActiveKey> {
    const now = Math.floor(Date.now() / 1000);
    await this.#refresh(now);
    const key = currentKey(this.#keys, now);
    if (key === undefined) throw new Error('no current signing key after refresh');
    return { kid: key.kid, privateJwk: key.privateJwk, notAfter: key.notAfter };
  }

  /** The public keys verifiers may need now (next, current and retired-but-live). */
  async jwks(): Promise<PublishedJwks> {
    const now = Math.floor(Date.now() / 1000);
    await this.#refresh(now);
    return {
      keys: publishedKeys(this.#keys, now, this.#config).map((key) => key.publicJwk),
      nextChange: nextChange(this.#keys, now, this.#config) ?? now + this.#config.period,
    };
  }

  override async alarm(): Promise<void> {
    await this.#refresh(Math.floor(Date.now() / 1000));
  }
}
