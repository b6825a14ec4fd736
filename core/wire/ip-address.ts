/**
 * IP addresses as bytes on the wire (4 for IPv4, 16 for IPv6) and back to text.
 *
 * Text forms: IPv4 dotted quad; IPv6 per RFC 5952 (lowercase, no leading zeros, the longest
 * run of two or more zero groups as `::`, the first of equal runs). An IPv4-mapped IPv6
 * address (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 peer) is IPv4 on
 * the wire, and a zone (`fe80::1%eth0`) is dropped: it names an interface of the host that
 * saw the address, meaningless to anyone else.
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface IpBytes {
  family: 4 | 6;
  /** 4 or 16 bytes. */
  bytes: Uint8Array;
}

/** An address's bytes, or undefined if `text` is not an IPv4 or IPv6 address. */
export function ipToBytes(text: string): IpBytes | undefined {
  const zone = text.indexOf('%');
  const address = zone < 0 ? text : text.slice(0, zone);
  if (isIPv4(address)) return { family: 4, bytes: Uint8Array.from(address.split('.'), Number) };
  if (!isIPv6(address)) return undefined;
  const bytes = ipv6Bytes(address);
  if (isIPv4Mapped(bytes)) return { family: 4, bytes: bytes.slice(12) };
  return { family: 6, bytes };
}

/** Whether 16 bytes are an IPv4-mapped IPv6 address (::ffff:0:0/96). */
export function isIPv4Mapped(bytes: Uint8Array): boolean {
  if (bytes.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

function ipv6Bytes(address: string): Uint8Array {
  const groups: number[] = [];
  const parse = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const [a, b, c, d] = g.split('.').map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const gap = address.indexOf('::');
  if (gap < 0) {
    groups.push(...parse(address));
  } else {
    const head = parse(address.slice(0, gap));
    const tail = parse(address.slice(gap + 2));
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/** The text form of 4 or 16 address bytes (see the module comment); undefined for another length. */
export function bytesToIp(bytes: Uint8Array): string | undefined {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) return undefined;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  let bestAt = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestAt = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(':');
  if (bestAt < 0) return hex(0, 8);
  return `${hex(0, bestAt)}::${hex(bestAt + bestLength, 8)}`;
}
