/** IPv4 address and CIDR parsing for the values that reach host tools and configuration files. */

/** An IPv4 address or CIDR that does not parse. */
export class InvalidAddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidAddressError";
  }
}

/** A parsed IPv4 network. */
export interface Ipv4Cidr {
  /** Network address, host bits cleared, as dotted quad. */
  network: string;
  prefixLength: number;
  /** Netmask as dotted quad, for dnsmasq's `dhcp-range`. */
  netmask: string;
}

const QUAD_PATTERN = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Checks a dotted-quad IPv4 address and returns it unchanged. */
export function validateIpv4(address: string, what = "IPv4 address"): string {
  if (!QUAD_PATTERN.test(address)) {
    throw new InvalidAddressError(
      `invalid ${what} ${JSON.stringify(address)}: expected a dotted quad such as 10.0.0.1`,
    );
  }

  return address;
}

/** Converts a dotted quad to an unsigned 32-bit number. */
export function ipv4ToNumber(address: string): number {
  const parts = validateIpv4(address).split(".").map(Number);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** Converts an unsigned 32-bit number to a dotted quad. */
export function numberToIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

function maskOf(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/** Parses `a.b.c.d/n`; the address part may have host bits set. */
export function parseCidr(cidr: string, what = "CIDR"): Ipv4Cidr {
  const [address, prefix, extra] = cidr.split("/");
  const prefixLength = Number(prefix);

  if (
    address === undefined ||
    extra !== undefined ||
    !/^\d{1,2}$/.test(prefix ?? "") ||
    prefixLength > 32
  ) {
    throw new InvalidAddressError(
      `invalid ${what} ${JSON.stringify(cidr)}: expected an IPv4 network such as 10.0.0.0/24`,
    );
  }

  const mask = maskOf(prefixLength);
  const network = numberToIpv4((ipv4ToNumber(validateIpv4(address, what)) & mask) >>> 0);
  return { network, prefixLength, netmask: numberToIpv4(mask) };
}

/** Returns whether an address lies inside a network. */
export function cidrContains(cidr: Ipv4Cidr, address: string): boolean {
  const mask = maskOf(cidr.prefixLength);
  return (ipv4ToNumber(address) & mask) >>> 0 === ipv4ToNumber(cidr.network);
}

/** Formats a parsed network as `a.b.c.d/n`. */
export function formatCidr(cidr: Ipv4Cidr): string {
  return `${cidr.network}/${cidr.prefixLength}`;
}
