import type { NetworkHost } from "./host.js";
import { validateIpv4 } from "./ipv4.js";
import { shortId, validateInterfaceName } from "./names.js";
import { applyNftScript, deleteTable, replaceTableScript } from "./nft.js";

/** Returns the bridge-family table that keeps an L3 network's DHCP server on this host. */
export function dhcpIsolationTable(l3NetworkUuid: string): string {
  return `tstack_dhcp_${shortId(l3NetworkUuid, "L3 network uuid")}`;
}

/**
 * Installs bridge rules so this host's DHCP server for an L3 network replies only to VMs on
 * this host. Every host runs a DHCP server with the same address on a shared L2 network, so DHCP
 * (udp 67/68) and ARP for that address must not cross the uplink in either direction.
 * The forward priority -10 runs before the security-group table (priority 100).
 */
export async function applyDhcpIsolation(
  host: NetworkHost,
  l3NetworkUuid: string,
  uplink: string,
  dhcpServerIp: string,
): Promise<void> {
  const port = JSON.stringify(validateInterfaceName(uplink, "uplink"));
  const server = validateIpv4(dhcpServerIp, "DHCP server address");
  const body = [
    "  chain forward {",
    "    type filter hook forward priority -10; policy accept;",
    `    oifname ${port} udp dport { 67, 68 } drop`,
    `    iifname ${port} udp dport { 67, 68 } drop`,
    `    oifname ${port} arp saddr ip ${server} drop`,
    `    oifname ${port} arp daddr ip ${server} drop`,
    `    iifname ${port} arp saddr ip ${server} drop`,
    `    iifname ${port} arp daddr ip ${server} drop`,
    "  }",
    "",
  ].join("\n");

  await applyNftScript(host, replaceTableScript("bridge", dhcpIsolationTable(l3NetworkUuid), body));
}

/** Removes an L3 network's DHCP isolation rules. */
export async function removeDhcpIsolation(host: NetworkHost, l3NetworkUuid: string) {
  await deleteTable(host, "bridge", dhcpIsolationTable(l3NetworkUuid));
}
