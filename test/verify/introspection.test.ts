/**
 * `verifyAgentToken` with `introspection` (RFC 7662): the broker's word that a token is still active, asked
 * after the local checks, cached by issuer and `jti` for `cacheSeconds`, and failing closed by default. A fake
 * broker answers and counts the calls; the clock is frozen through the `now` option.
 */
import { verifyAgentToken } from '@tessera/verify';
import { describe, expect, it } from 'vitest';
import { at, fakeIssuer, optionsFor, refusal } from './support';

describe('verifyAgentToken: introspection (RFC 7662)', () => {
  it('does not introspect unless asked to', async () => {
    const fake = await fakeIssuer();
    fake.answers.introspection = 'inactive';
    await verifyAgentToken(await fake.sign(), optionsFor(fake));
    await verifyAgentToken(await fake.sign(), { ...optionsFor(fake), introspection: false });
    expect(fake.calls.introspection).toBe(0);
  });

  it('accepts a token the broker says is active, sending it the token', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    await expect(verifyAgentToken(token, { ...optionsFor(fake), introspection: true })).resolves.toMatchObject({
      iss: fake.issuer,
    });
    expect(fake.introspected).toEqual([token]);
  });

  it('refuses a token the broker says is no longer active', async () => {
    const fake = await fakeIssuer();
    fake.answers.introspection = 'inactive';
    const error = await refusal(verifyAgentToken(await fake.sign(), { ...optionsFor(fake), introspection: true }));
    expect(error).toMatchObject({ code: 'revoked', status: 401, error: 'invalid_token' });
  });

  it('does not introspect a token that fails the local checks', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { aud: 'https://graph.example.com' } });
    const error = await refusal(verifyAgentToken(token, { ...optionsFor(fake), introspection: true }));
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
    const error = await refusal(verifyAgentToken(await fake.sign(), { ...optionsFor(fake), introspection: true }));
    expect(error).toMatchObject({ code: 'introspection_unavailable', status: 503, error: undefined });
  });

  it("accepts on the signature alone when the endpoint fails and onUnavailable is 'accept'", async () => {
    const fake = await fakeIssuer();
    fake.answers.introspection = 'down';
    const options = { ...optionsFor(fake), introspection: { onUnavailable: 'accept' as const } };
    await expect(verifyAgentToken(await fake.sign(), options)).resolves.toMatchObject({ iss: fake.issuer });
    expect(fake.calls.introspection).toBe(1);
  });

  it("still refuses a token the broker says is inactive when onUnavailable is 'accept'", async () => {
    const fake = await fakeIssuer();
    fake.answers.introspection = 'inactive';
    const options = { ...optionsFor(fake), introspection: { onUnavailable: 'accept' as const } };
    expect((await refusal(verifyAgentToken(await fake.sign(), options))).code).toBe('revoked');
  });

  it('does not cache a failure: the next call asks again', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    fake.answers.introspection = 'down';
    const options = { ...optionsFor(fake), introspection: true };
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
      verifyAgentToken(token, { ...optionsFor(fake), introspection: true, now: at(seconds) });
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
      verifyAgentToken(token, { ...optionsFor(fake), introspection: { cacheSeconds: 60 }, now: at(seconds) });
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
    const options = { ...optionsFor(fake), introspection: true };
    expect((await refusal(verifyAgentToken(token, options))).code).toBe('revoked');
    fake.answers.introspection = 'active';
    expect((await refusal(verifyAgentToken(token, options))).code).toBe('revoked');
    expect(fake.calls.introspection).toBe(1);
  });

  it('asks every time with cacheSeconds 0', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    const options = { ...optionsFor(fake), introspection: { cacheSeconds: 0 } };
    await verifyAgentToken(token, options);
    await verifyAgentToken(token, options);
    expect(fake.calls.introspection).toBe(2);
  });

  it('keeps one answer per token', async () => {
    const fake = await fakeIssuer();
    const options = { ...optionsFor(fake), introspection: true };
    await verifyAgentToken(await fake.sign(), options);
    fake.answers.introspection = 'inactive';
    expect((await refusal(verifyAgentToken(await fake.sign(), options))).code).toBe('revoked');
    expect(fake.calls.introspection).toBe(2);
  });

  it('keeps answers apart by issuer, for tokens with the same jti', async () => {
    const [first, second] = [await fakeIssuer(), await fakeIssuer()];
    const jti = crypto.randomUUID();
    second.answers.introspection = 'inactive';
    await verifyAgentToken(await first.sign({ claims: { jti } }), { ...optionsFor(first), introspection: true });
    const token = await second.sign({ claims: { jti } });
    expect((await refusal(verifyAgentToken(token, { ...optionsFor(second), introspection: true }))).code).toBe(
      'revoked',
    );
    expect(second.calls.introspection).toBe(1);
  });
});
