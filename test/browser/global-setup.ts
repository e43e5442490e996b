/**
 * Starts the real worker bundle on workerd (Miniflare, the console's files as Workers Static Assets) once
 * for the browser tests, with a stand-in Cloudflare Access team: the broker fetches the team's certs from
 * `https://acme.cloudflareaccess.com/cdn-cgi/access/certs` (policies/admins.yaml), and this setup answers
 * that one URL with a key it made, whose private half the tests sign Access JWTs with.
 */
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { Response } from 'miniflare';
import type { TestProject } from 'vitest/node';
import { startLocalBroker } from '../../scripts/lib/local-broker';
import { requireChromium } from './chromium';

export const ACCESS_TEAM_DOMAIN = 'https://acme.cloudflareaccess.com';
const ACCESS_KID = 'browser-tests-access-1';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The broker as configured in `policies/`. */
    brokerUrl: string;
    /** The private key the stand-in Access team signs with (RS256), with its `kid`. */
    accessKey: JWK;
  }
}

export default async function setup(project: TestProject) {
  await requireChromium();
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const certs = { keys: [{ ...(await exportJWK(publicKey)), kid: ACCESS_KID, alg: 'RS256', use: 'sig' }] };
  const broker = await startLocalBroker({
    outboundService(request) {
      if (request.url === `${ACCESS_TEAM_DOMAIN}/cdn-cgi/access/certs`) return Response.json(certs);
      return new Response(`the browser tests serve no ${request.url}`, { status: 404 });
    },
  });
  project.provide('brokerUrl', broker.url);
  project.provide('accessKey', { ...(await exportJWK(privateKey)), kid: ACCESS_KID, alg: 'RS256' });
  return () => broker.dispose();
}
