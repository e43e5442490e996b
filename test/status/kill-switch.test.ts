/**
 * The kill switch on the status lists: while it is engaged every entry that is not INVALID reads SUSPENDED
 * (reversible, as the switch is); once released they read as their tokens are again.
 */
import { exports } from 'cloudflare:workers';
import { afterEach, describe, expect, it } from 'vitest';
import { STATUS } from '../../worker/core/status-list';
import { ISSUER } from '../helpers/demo';
import { issue } from '../helpers/tokens';
import { setKillSwitch, statusOf } from './list';

afterEach(async () => {
  expect((await setKillSwitch(false, 'test cleanup')).status).toBe(200);
});

describe('the kill switch on the status lists', () => {
  it('reads SUSPENDED for every live token while engaged, INVALID stays INVALID, VALID again once released', async () => {
    const live = await issue();
    const revoked = await issue();
    const revoke = await exports.default.fetch(`${ISSUER}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: revoked.token }),
    });
    expect(revoke.status).toBe(200);

    expect((await setKillSwitch(true)).status).toBe(200);
    expect(await statusOf(live.token)).toBe(STATUS.SUSPENDED);
    expect(await statusOf(revoked.token)).toBe(STATUS.INVALID);

    expect((await setKillSwitch(false, 'drill over')).status).toBe(200);
    expect(await statusOf(live.token)).toBe(STATUS.VALID);
    expect(await statusOf(revoked.token)).toBe(STATUS.INVALID);
  });
});
