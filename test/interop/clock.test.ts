/**
 * The clock the interop tests and their brokers run on: the real one, or `clockOffsetMs` ahead of it under
 * `npm run test:next-year` (test/clock/). Node's `performance` keeps the real clock.
 */
import { decodeJwt } from 'jose';
import { describe, expect, inject, it } from 'vitest';
import { exchangeParameters, TOKEN_EXCHANGE } from './agent';

const offsetSeconds = inject('clockOffsetMs') / 1000;
const realNowSeconds = () => (performance.timeOrigin + performance.now()) / 1000;

describe('the interop clock', () => {
  it('runs the configured offset ahead of the real clock, here and in the broker', async () => {
    const brokerUrl = inject('brokerUrl');
    const response = await fetch(`${brokerUrl}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, ...(await exchangeParameters(brokerUrl)) }),
    });
    expect(response.status).toBe(200);
    const { iat } = decodeJwt(((await response.json()) as { access_token: string }).access_token);
    expect(Math.abs(Date.now() / 1000 - realNowSeconds() - offsetSeconds)).toBeLessThan(5);
    expect(Math.abs((iat ?? 0) - realNowSeconds() - offsetSeconds)).toBeLessThan(30);
  });
});
