/**
 * The demo deployment the tests run against (wrangler.toml, policies/, scripts/demo/): the broker's issuer,
 * the demo agent and its key, and the demo APIs.
 */
import { env } from 'cloudflare:workers';
import demoKey from '../../scripts/demo/demo-agent.private.jwk.json';

export const ISSUER = env.ISSUER;
export const DEMO_AGENT = 'demo-agent';
export const DEMO_KID = demoKey.kid;
export const TICKETS = 'https://tickets.example.com';
export const GRAPH = 'https://graph.example.com';
export const IAM = 'https://iam.example.com';
