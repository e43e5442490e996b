import { describe, expect, it } from 'vitest';
import { emailHostKind, type HostKind, urlHostKind } from '../../scripts/deploy/hosts';

describe('where a deployed broker can point', () => {
  const urls: { url: string; kind: HostKind }[] = [
    { url: 'https://tessera.acme.com', kind: 'public' },
    { url: 'https://8.8.8.8', kind: 'public' },
    { url: 'https://[2606:4700::1]', kind: 'public' },
    { url: 'http://localhost:8787', kind: 'private' },
    { url: 'https://broker.localhost', kind: 'private' },
    { url: 'https://127.0.0.1', kind: 'private' },
    { url: 'https://10.1.2.3', kind: 'private' },
    { url: 'https://172.16.0.1', kind: 'private' },
    { url: 'https://172.32.0.1', kind: 'public' },
    { url: 'https://192.168.0.10', kind: 'private' },
    { url: 'https://169.254.169.254', kind: 'private' },
    { url: 'https://[::1]', kind: 'private' },
    { url: 'https://[::ffff:127.0.0.1]', kind: 'private' },
    { url: 'https://[fd12::1]', kind: 'private' },
    { url: 'https://kubernetes.default.svc.cluster.local', kind: 'private' },
    { url: 'https://intranet', kind: 'private' },
    { url: 'https://tessera.example.com', kind: 'example' },
    { url: 'https://EXAMPLE.org', kind: 'example' },
    { url: 'https://spire.acme.example', kind: 'example' },
    { url: 'https://broker.test', kind: 'example' },
  ];
  for (const { url, kind } of urls) {
    it(`classifies ${url} as ${kind}`, () => {
      expect(urlHostKind(url)).toBe(kind);
    });
  }

  it('classifies email domains and domain globs', () => {
    expect(emailHostKind('alice@example.com')).toBe('example');
    expect(emailHostKind('*@example.com')).toBe('example');
    expect(emailHostKind('*@*.example.com')).toBe('example');
    expect(emailHostKind('*@acme.*')).toBeUndefined();
    expect(emailHostKind('alice@acme.com')).toBe('public');
    expect(emailHostKind('service-token')).toBeUndefined();
  });
});
