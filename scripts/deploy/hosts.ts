/**
 * Which hosts a deployed broker can use: public ones, private or loopback ones (a Worker cannot reach
 * them, and no agent outside the network can reach a broker named by one), and the names reserved for
 * examples (RFC 2606, RFC 6761), which never resolve to anything real.
 */
import { BlockList, isIP } from 'node:net';

export type HostKind = 'public' | 'private' | 'example';

const PRIVATE_RANGES = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
] as const) {
  PRIVATE_RANGES.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
] as const) {
  PRIVATE_RANGES.addSubnet(network, prefix, 'ipv6');
}

/** Suffixes that only mean something inside one network. */
const PRIVATE_SUFFIXES = ['localhost', 'local', 'internal', 'lan', 'home.arpa', 'intranet', 'corp'];
/** Reserved for documentation and tests: RFC 2606 §2-3, RFC 6761 §6. */
const EXAMPLE_SUFFIXES = ['example', 'example.com', 'example.net', 'example.org', 'test', 'invalid'];

function under(host: string, suffixes: readonly string[]): boolean {
  return suffixes.some((suffix) => host === suffix || host.endsWith(`.${suffix}`));
}

/** Classifies a URL's `hostname` (IPv6 in brackets, as `URL` gives it) or an email's domain. */
export function hostKind(hostname: string): HostKind {
  const host = hostname
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');
  const family = isIP(host);
  if (family === 4) return PRIVATE_RANGES.check(host, 'ipv4') ? 'private' : 'public';
  // BlockList checks an IPv4-mapped IPv6 address (`::ffff:7f00:1`) against the IPv4 ranges too.
  if (family === 6) return PRIVATE_RANGES.check(host, 'ipv6') ? 'private' : 'public';
  if (under(host, EXAMPLE_SUFFIXES)) return 'example';
  // A single label (`kubernetes`, `intranet`) resolves only through a local search domain.
  if (under(host, PRIVATE_SUFFIXES) || !host.includes('.')) return 'private';
  return 'public';
}

/** The host kind of a URL, or undefined when `url` does not parse. */
export function urlHostKind(url: string): HostKind | undefined {
  const parsed = URL.parse(url);
  return parsed === null ? undefined : hostKind(parsed.hostname);
}

/** The host kind of an email address's domain, or of a glob such as `*@acme.com`; undefined without `@`. */
export function emailHostKind(address: string): HostKind | undefined {
  const at = address.lastIndexOf('@');
  if (at < 0) return undefined;
  const domain = address.slice(at + 1).replace(/^\*\./, '');
  return domain === '' || domain.includes('*') ? undefined : hostKind(domain);
}
