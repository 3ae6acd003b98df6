import { ApiError } from "@tstack/api";

/** IPv4 arithmetic on unsigned 32-bit numbers. */

export function ipToLong(ip: string): number {
  return ip.split(".").reduce((value, octet) => value * 256 + Number(octet), 0);
}

export function longToIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

/** Prefix length of a netmask, or undefined when its one bits are not contiguous. */
export function netmaskPrefix(netmask: string): number | undefined {
  const value = ipToLong(netmask);

  for (let prefix = 0; prefix <= 32; prefix++) {
    if (prefixToLong(prefix) === value) {
      return prefix;
    }
  }

  return undefined;
}

export function prefixToLong(prefix: number): number {
  return prefix === 0 ? 0 : (2 ** 32 - 2 ** (32 - prefix)) >>> 0;
}

/** A network: its first address as a number, its prefix length and its size. */
export interface Network {
  network: number;
  prefix: number;
  size: number;
}

export function networkOf(ip: string, prefix: number): Network {
  const size = 2 ** (32 - prefix);
  return { network: Math.floor(ipToLong(ip) / size) * size, prefix, size };
}

export function cidrText(network: Network) {
  return `${longToIp(network.network)}/${network.prefix}`;
}

export function contains(network: Network, ip: number) {
  return ip >= network.network && ip < network.network + network.size;
}

/**
 * Parses `a.b.c.d/n` for an IP range. Host bits must be zero, and the prefix must leave room
 * for a gateway and at least one address beside the network and broadcast addresses.
 */
export function parseRangeCidr(text: string, field: string): Network {
  const [ip, prefixText] = text.split("/");
  const prefix = Number(prefixText);

  if (prefix < 8 || prefix > 30) {
    throw new ApiError(
      "invalidArgument",
      `${field}: ${text} has prefix /${prefix}; use a prefix from /8 to /30`,
    );
  }

  const network = networkOf(ip!, prefix);

  if (network.network !== ipToLong(ip!)) {
    throw new ApiError(
      "invalidArgument",
      `${field}: ${text} has host bits set; use ${cidrText(network)}`,
    );
  }

  return network;
}
