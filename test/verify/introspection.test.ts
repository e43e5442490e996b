/**
 * `verifyAgentToken` with `introspection` (RFC 7662): the broker's word that a token is still active, asked
 * after the local checks as this API (its audience and credential, HTTP Basic), cached by issuer and `jti`
 * for `cacheSeconds`, and failing closed by default. A credential the broker refuses, or none, is a
 * configuration error. A fake broker answers and counts the calls; the clock is frozen through the `now`
 * option.
 */
import { verifyAgentToken } from '@tessera/verify';
import { describe, expect, it } from 'vitest';
import { TICKETS } from '../helpers/demo';
import {
  at,
  FAKE_INTROSPECTION_CREDENTIAL,
  fakeIssuer,
  introspectionWith,
  optionsFor,
  refusal,
} from '../helpers/verify';

describe('verifyAgentToken: introspection (RFC 7662)', () => {
  it('does not introspect unless asked to', async () => {
    const fake = await fakeIssuer();
    fake.answers.introspection = 'inactive';
    await verifyAgentToken(await fake.sign(), optionsFor(fake));
    expect(fake.calls.introspection).toBe(0);
  });

  it('accepts a token the broker says is active, sending it the token as the API (RFC 7662 §2.1)', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    await expect(
      verifyAgentToken(token, { ...optionsFor(fake), introspection: introspectionWith() }),
    ).resolves.toMatchObject({
      iss: fake.issuer,
    });
    expect(fake.introspected).toEqual([token]);
    expect(fake.introspectedBy).toEqual([{ clientId: TICKETS, password: FAKE_INTROSPECTION_CREDENTIAL }]);
  });

  it('throws a TypeError when the broker refuses the credential, even with onUnavailable accept', async () => {
    const fake = await fakeIssuer();
    for (const introspection of [
      { credential: 'tessera_introspection.not-the-one' },
      { credential: 'tessera_introspection.not-the-one', onUnavailable: 'accept' as const },
    ]) {
      await expect(verifyAgentToken(await fake.sign(), { ...optionsFor(fake), introspection })).rejects.toThrow(
        TypeError,
      );
    }
    expect(fake.calls.introspection).toBe(2);
  });

  it('throws a TypeError for introspection without a credential', async () => {
    const fake = await fakeIssuer();
    for (const introspection of [true, {}, { credential: '' }, null]) {
      const options = { ...optionsFor(fake), introspection } as unknown as Parameters<typeof verifyAgentToken>[1];
      await expect(verifyAgentToken(await fake.sign(), options)).rejects.toThrow(TypeError);
    }
    expect(fake.calls.introspection).toBe(0);
  });

  it('refuses a token the broker says is no longer active', async () => {
    const fake = await fakeIssuer();
    fake.answers.introspection = 'inactive';
    const error = await refusal(
      verifyAgentToken(await fake.sign(), { ...optionsFor(fake), introspection: introspectionWith() }),
    );
    expect(error).toMatchObject({ code: 'revoked', status: 401, error: 'invalid_token' });
  });

  it('does not introspect a token that fails the local checks', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { aud: 'https://graph.example.com' } });
    const error = await refusal(verifyAgentToken(token, { ...optionsFor(fake), introspection: introspectionWith() }));
    expect(error.code).toBe('wrong_audience');
    expect(fake.calls.introspection).toBe(0);
  });

  it.each([
    ['answers 500', { introspection: 'down' as const }],
    ['cannot be reached', { introspection: 'unreachable' as const }],
    ['answers without an active member', { introspection: 'no_active' as const }],
    ['is not in the metadata', { introspectionEndpoint: false }],
  ])('refuses with 503 (fail closed) when the endpoint %s', async (_, answers) => {
    const fake = await fakeIssuer();
    Object.assign(fake.answers, answers);
    const error = await refusal(
      verifyAgentToken(await fake.sign(), { ...optionsFor(fake), introspection: introspectionWith() }),
    );
    expect(error).toMatchObject({ code: 'introspection_unavailable', status: 503, error: undefined });
  });

  it("accepts on the signature alone when the endpoint fails and onUnavailable is 'accept'", async () => {
    const fake = await fakeIssuer();
    fake.answers.introspection = 'down';
    const options = { ...optionsFor(fake), introspection: introspectionWith({ onUnavailable: 'accept' }) };
    await expect(verifyAgentToken(await fake.sign(), options)).resolves.toMatchObject({ iss: fake.issuer });
    expect(fake.calls.introspection).toBe(1);
  });

  it("still refuses a token the broker says is inactive when onUnavailable is 'accept'", async () => {
    const fake = await fakeIssuer();
    fake.answers.introspection = 'inactive';
    const options = { ...optionsFor(fake), introspection: introspectionWith({ onUnavailable: 'accept' }) };
    expect((await refusal(verifyAgentToken(await fake.sign(), options))).code).toBe('revoked');
  });

  it('does not cache a failure: the next call asks again', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    fake.answers.introspection = 'down';
    const options = { ...optionsFor(fake), introspection: introspectionWith() };
    expect((await refusal(verifyAgentToken(token, options))).code).toBe('introspection_unavailable');
    fake.answers.introspection = 'active';
    await expect(verifyAgentToken(token, options)).resolves.toMatchObject({ iss: fake.issuer });
    expect(fake.calls.introspection).toBe(2);
  });
});

describe('verifyAgentToken: introspection answers are cached', () => {
  it('reuses an answer for 5 seconds by default, then asks again', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    const verifyAt = (seconds: number) =>
      verifyAgentToken(token, { ...optionsFor(fake), introspection: introspectionWith(), now: at(seconds) });
    await verifyAt(0);
    await verifyAt(4);
    expect(fake.calls.introspection).toBe(1);
    await verifyAt(5);
    expect(fake.calls.introspection).toBe(2);
  });

  it('reuses an answer for cacheSeconds: a revocation is seen once it expires', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    const verifyAt = (seconds: number) =>
      verifyAgentToken(token, {
        ...optionsFor(fake),
        introspection: introspectionWith({ cacheSeconds: 60 }),
        now: at(seconds),
      });
    await verifyAt(0);
    fake.answers.introspection = 'inactive';
    await expect(verifyAt(59)).resolves.toMatchObject({ iss: fake.issuer });
    expect(fake.calls.introspection).toBe(1);
    expect((await refusal(verifyAt(60))).code).toBe('revoked');
    expect(fake.calls.introspection).toBe(2);
  });

  it('caches a refusal too', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    fake.answers.introspection = 'inactive';
    const options = { ...optionsFor(fake), introspection: introspectionWith() };
    expect((await refusal(verifyAgentToken(token, options))).code).toBe('revoked');
    fake.answers.introspection = 'active';
    expect((await refusal(verifyAgentToken(token, options))).code).toBe('revoked');
    expect(fake.calls.introspection).toBe(1);
  });

  it('asks every time with cacheSeconds 0', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    const options = { ...optionsFor(fake), introspection: introspectionWith({ cacheSeconds: 0 }) };
    await verifyAgentToken(token, options);
    await verifyAgentToken(token, options);
    expect(fake.calls.introspection).toBe(2);
  });

  it('keeps one answer per token', async () => {
    const fake = await fakeIssuer();
    const options = { ...optionsFor(fake), introspection: introspectionWith() };
    await verifyAgentToken(await fake.sign(), options);
    fake.answers.introspection = 'inactive';
    expect((await refusal(verifyAgentToken(await fake.sign(), options))).code).toBe('revoked');
    expect(fake.calls.introspection).toBe(2);
  });

  it('keeps answers apart by issuer, for tokens with the same jti', async () => {
    const [first, second] = [await fakeIssuer(), await fakeIssuer()];
    const jti = crypto.randomUUID();
    second.answers.introspection = 'inactive';
    await verifyAgentToken(await first.sign({ claims: { jti } }), {
      ...optionsFor(first),
      introspection: introspectionWith(),
    });
    const token = await second.sign({ claims: { jti } });
    expect(
      (await refusal(verifyAgentToken(token, { ...optionsFor(second), introspection: introspectionWith() }))).code,
    ).toBe('revoked');
    expect(second.calls.introspection).toBe(1);
  });
});
