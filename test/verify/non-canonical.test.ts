/**
 * A token is one exact string (issue 12 §3): the verifier accepts a JWT only as three segments of unpadded
 * base64url in their canonical encoding (`isCanonicalJwt`), in `verifyAgentToken`, in DPoP proofs and in
 * the `Authorization` header `requireAgent` reads, although jose would verify the other spellings.
 */
import { isCanonicalJwt, verifyAgentToken, verifyDpopProof } from '@tessera/verify';
import { type AgentVariables, requireAgent } from '@tessera/verify/hono';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { nowSeconds } from '../helpers/clock';
import { TICKETS } from '../helpers/demo';
import { headerSpellings, nonCanonicalSpellings } from '../helpers/spellings';
import { clientKey, fakeIssuer, optionsFor, RESOURCE, refusal, signProof } from '../helpers/verify';

describe('isCanonicalJwt', () => {
  const canonical = [
    { name: 'segments of 4n characters', value: 'eyJh.eyJh.c2ln' },
    { name: 'a last character with no unused bits set (4n + 2)', value: 'eyJh.eyJh.c2lnbw' },
    { name: 'a last character with no unused bits set (4n + 3)', value: 'eyJh.eyJh.c2lnbmE' },
    { name: 'the alphabet of base64url', value: 'AZaz09-_.AZaz09-_.AZaz09-_' },
    { name: 'an empty signature (left to the algorithm check)', value: 'eyJh.eyJh.' },
  ];
  it.each(canonical)('accepts $name', ({ value }) => {
    expect(isCanonicalJwt(value)).toBe(true);
  });

  const refused = [
    { name: 'padding', value: 'eyJh.eyJh.c2lnbw==' },
    { name: 'padding inside a segment', value: 'eyJh.eyJh.c2==lnbw' },
    { name: 'a space at the end', value: 'eyJh.eyJh.c2ln ' },
    { name: 'a space at the start', value: ' eyJh.eyJh.c2ln' },
    { name: 'a tab inside a segment', value: 'eyJh.ey\tJh.c2ln' },
    { name: 'a newline inside a segment', value: 'eyJh.eyJh.c2\nln' },
    { name: 'the base64 character +', value: 'eyJh.eyJh.c2+n' },
    { name: 'the base64 character /', value: 'eyJh.eyJh.c2/n' },
    { name: 'unused bits set in a last character (4n + 2)', value: 'eyJh.eyJh.c2lnbx' },
    { name: 'unused bits set in a last character (4n + 3)', value: 'eyJh.eyJh.c2lnbmF' },
    { name: 'a segment of 4n + 1 characters', value: 'eyJh.eyJh.c2lnb' },
    { name: 'two segments', value: 'eyJh.eyJh' },
    { name: 'four segments', value: 'eyJh.eyJh.c2ln.c2ln' },
    { name: 'a JWE (five segments)', value: 'eyJh.eyJh.c2ln.c2ln.c2ln' },
    { name: 'the empty string', value: '' },
    { name: 'a character outside ASCII', value: 'eyJh.eyJh.c2lé' },
    { name: 'a value that is not a string', value: 42 },
  ];
  it.each(refused)('refuses $name', ({ value }) => {
    expect(isCanonicalJwt(value)).toBe(false);
  });
});

describe('verifyAgentToken: a non-canonical spelling of a valid token', () => {
  it('is refused as malformed, before the issuer is asked anything', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    for (const spelling of nonCanonicalSpellings(token)) {
      const error = await refusal(verifyAgentToken(spelling.token, optionsFor(fake)));
      expect(error, spelling.name).toMatchObject({ code: 'malformed', status: 401, error: 'invalid_token' });
    }
    expect(fake.calls.metadata).toBe(0);
    await expect(verifyAgentToken(token, optionsFor(fake))).resolves.toMatchObject({ iss: fake.issuer });
  });
});

describe('verifyDpopProof: a non-canonical spelling of a valid proof', () => {
  it('is refused as dpop_invalid', async () => {
    const key = await clientKey();
    const proof = await signProof(key, { htm: 'POST', htu: RESOURCE });
    const check = { method: 'POST', url: RESOURCE };
    for (const spelling of nonCanonicalSpellings(proof)) {
      const error = await refusal(verifyDpopProof(spelling.token, check));
      expect(error, spelling.name).toMatchObject({ code: 'dpop_invalid', status: 401, error: 'invalid_dpop_proof' });
    }
    await expect(verifyDpopProof(proof, check)).resolves.toMatchObject({ jkt: expect.any(String) });
  });
});

describe('requireAgent: a non-canonical spelling in the Authorization header', () => {
  it('is answered 401 invalid_token, while the token as issued passes', async () => {
    const fake = await fakeIssuer();
    const app = new Hono<{ Variables: AgentVariables }>();
    const guard = requireAgent({ issuer: fake.issuer, audience: TICKETS, fetch: fake.fetch });
    app.get('/tickets', guard, (c) => c.text(c.get('agent').sub));
    const get = (authorization: string) => app.request('/tickets', { headers: { authorization } });
    const token = await fake.sign({ claims: { iat: nowSeconds(), nbf: nowSeconds(), exp: nowSeconds() + 300 } });
    for (const spelling of headerSpellings(token)) {
      const response = await get(`Bearer ${spelling.token}`);
      expect(response.status, spelling.name).toBe(401);
      expect(await response.json()).toMatchObject({ error: 'invalid_token' });
    }
    expect((await get(`Bearer ${token}`)).status).toBe(200);
  });
});
