let checked: string | undefined;

/**
 * The broker's issuer URL from the `ISSUER` variable: the `iss` of every token and the `aud` of every
 * attestation. Misconfiguration is a plain `Error`: the broker must not guess its own name.
 */
export function brokerIssuer(env: Env): string {
  if (checked !== env.ISSUER) {
    const url = URL.parse(env.ISSUER);
    if (url === null || !['https:', 'http:'].includes(url.protocol) || url.search !== '' || url.hash !== '') {
      throw new Error('ISSUER must be an http(s) URL without query or fragment');
    }
    checked = env.ISSUER;
  }
  return checked;
}
