/**
 * Tessera command line.
 *
 *   npm run cli -- keygen [--kid ID]
 *       A new ES256 key pair for a self-signed agent: keep the private JWK with the agent, paste the
 *       public JWK into the agent's `attestation.self_signed.keys` in policies/agents.yaml.
 *   npm run cli -- admin-credential --id ID
 *       A new admin credential: give the credential to its holder (it is shown once), and add the printed
 *       entry, with the role it should have, to policies/admins.yaml.
 *   npm run cli -- approvals [--status pending|approved|denied|expired|collected]
 *   npm run cli -- approve APPROVAL_ID --reason "why"      (and: deny APPROVAL_ID --reason "why")
 *       List and decide step-up approvals, as an approver. The credential comes from --credential or
 *       TESSERA_ADMIN_CREDENTIAL.
 *   npm run cli -- attest --agent ID --key FILE [--broker URL]
 *       Prints a fresh self-signed attestation (single use, two minutes).
 *   npm run cli -- token --agent ID --key FILE --audience API --scope "a b" --task "what" [--justification "why"]
 *                        [--ttl SECONDS] [--broker URL]
 *       Exchanges a fresh attestation for an access token and prints the broker's answer.
 */
import { parseArgs } from 'node:util';
import { exportJWK, generateKeyPair } from 'jose';
import { newAdminCredential } from '../worker/core/admin-credential';
import { adminCall } from './lib/admin';
import { exchangeToken, readPrivateJwk, selfSignedAttestation } from './lib/agent';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    agent: { type: 'string' },
    key: { type: 'string' },
    kid: { type: 'string' },
    id: { type: 'string' },
    broker: { type: 'string', default: process.env.TESSERA_URL ?? 'http://localhost:8787' },
    audience: { type: 'string' },
    scope: { type: 'string' },
    task: { type: 'string' },
    justification: { type: 'string' },
    ttl: { type: 'string' },
    status: { type: 'string', default: 'pending' },
    reason: { type: 'string' },
    credential: { type: 'string', default: process.env.TESSERA_ADMIN_CREDENTIAL ?? '' },
  },
});

function required(name: keyof typeof values): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') {
    console.error(`missing --${name}`);
    process.exit(2);
  }
  return value;
}

switch (positionals[0]) {
  case 'keygen': {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const meta = { kid: values.kid ?? crypto.randomUUID(), alg: 'ES256', use: 'sig' };
    console.log('# private JWK: give it to the agent, keep it secret');
    console.log(JSON.stringify({ ...(await exportJWK(privateKey)), ...meta }));
    console.log('# public JWK: add it to the agent in policies/agents.yaml');
    console.log(JSON.stringify({ ...(await exportJWK(publicKey)), ...meta }));
    break;
  }
  case 'admin-credential': {
    const id = required('id');
    const { credential, secretSha256 } = await newAdminCredential(id);
    console.log('# the credential: give it to its holder; it is not stored anywhere');
    console.log(credential);
    console.log('# add to policies/admins.yaml under credentials (role: admin | approver | auditor)');
    console.log(`  - { id: ${id}, role: auditor, secret_sha256: ${secretSha256} }`);
    break;
  }
  case 'approvals': {
    const { status, body } = await adminCall({
      broker: values.broker,
      credential: required('credential'),
      method: 'GET',
      path: `/admin/approvals?status=${encodeURIComponent(values.status)}`,
    });
    console.log(JSON.stringify(body, null, 2));
    process.exit(status === 200 ? 0 : 1);
    break;
  }
  case 'approve':
  case 'deny': {
    const id = positionals[1];
    if (id === undefined) {
      console.error(`usage: npm run cli -- ${positionals[0]} APPROVAL_ID --reason "why"`);
      process.exit(2);
    }
    const { status, body } = await adminCall({
      broker: values.broker,
      credential: required('credential'),
      method: 'POST',
      path: `/admin/approvals/${encodeURIComponent(id)}`,
      body: { decision: positionals[0], reason: required('reason') },
    });
    console.log(JSON.stringify(body, null, 2));
    process.exit(status === 200 ? 0 : 1);
    break;
  }
  case 'attest': {
    const jwk = await readPrivateJwk(required('key'));
    console.log(await selfSignedAttestation(required('agent'), jwk, values.broker));
    break;
  }
  case 'token': {
    const jwk = await readPrivateJwk(required('key'));
    const attestation = await selfSignedAttestation(required('agent'), jwk, values.broker);
    const { status, body } = await exchangeToken(values.broker, {
      attestation,
      audience: required('audience'),
      scope: required('scope'),
      task: { description: required('task'), ...(values.justification && { justification: values.justification }) },
      ...(values.ttl !== undefined && { requestedTtl: Number(values.ttl) }),
    });
    console.log(JSON.stringify(body, null, 2));
    process.exit(status === 200 ? 0 : 1);
    break;
  }
  default:
    console.error(
      'usage: npm run cli -- keygen | admin-credential | attest | token | approvals | approve | deny   (see scripts/cli.ts)',
    );
    process.exit(2);
}
