/**
 * Compiles security groups to one nftables script.
 *
 * The bridge family filters by bridge port (the VM NIC's tap), but on this kernel it cannot use
 * conntrack: `ct` in a bridge table fails with "Protocol error" because nf_conntrack_bridge is
 * not built. So the inet table, which receives bridged IPv4/IPv6 through br_netfilter, marks packets
 * of established or related connections with ESTABLISHED_MARK, and the bridge table, which runs
 * after br_netfilter's forward hook (priority 100 > 0), accepts marked packets and applies the
 * per-NIC rules to the rest.
 */
import { METADATA_ADDRESS } from "./dnsmasq-config.js";
import { formatCidr, parseCidr, validateIpv4 } from "./ipv4.js";
import { shortId, tapName } from "./names.js";
import { replaceTableScript } from "./nft.js";
import type { NicSecurityRules, SecurityGroupRule } from "./types.js";

/** Packet mark bit meaning "part of an established or related connection". */
export const ESTABLISHED_MARK = 0x00800000;

/** Names of an agent's security-group tables in nftables. */
export interface SecurityGroupTables {
  /** Bridge-family table with the per-NIC chains. */
  bridge: string;
  /** Inet-family table that marks established connections. */
  conntrack: string;
}

/**
 * Names the security-group tables after the agent's namespace prefix: `tstack_sg` and
 * `tstack_sg_ct` for the default `tstack-`. Each agent loads its whole table at once, so two
 * agents on one machine (as in tests) need their own prefix to keep each other's rules.
 */
export function securityGroupTables(namespacePrefix = "tstack-"): SecurityGroupTables {
  const bridge = `${namespacePrefix.replaceAll("-", "_")}sg`;
  return { bridge, conntrack: `${bridge}_ct` };
}

const MARK = `0x${ESTABLISHED_MARK.toString(16).padStart(8, "0")}`;

function remoteGroupSet(groupUuid: string): string {
  return `rg_${shortId(groupUuid, "remote group uuid")}`;
}

function portMatch(rule: SecurityGroupRule): string {
  if (rule.startPort === undefined) {
    return "";
  }

  const start = validatePort(rule.startPort);
  const end = validatePort(rule.endPort ?? rule.startPort);

  if (rule.protocol !== "tcp" && rule.protocol !== "udp") {
    throw new Error(`invalid security-group rule: ports need tcp or udp, not ${rule.protocol}`);
  }

  if (end < start) {
    throw new Error(`invalid security-group port range ${start}-${end}: end is below start`);
  }

  return start === end
    ? ` ${rule.protocol} dport ${start}`
    : ` ${rule.protocol} dport ${start}-${end}`;
}

function validatePort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new Error(`invalid port ${JSON.stringify(port)}: expected 1 to 65535`);
  }

  return port;
}

function protocolMatch(rule: SecurityGroupRule): string {
  switch (rule.protocol) {
    case "tcp":
    case "udp":
    case "icmp":
      return ` meta l4proto ${rule.protocol}`;
    case "all":
      return " meta protocol ip";
    default:
      throw new Error(`invalid security-group protocol ${JSON.stringify(rule.protocol)}`);
  }
}

/** Compiles one rule to an nft statement. Ingress rules match the source, egress the destination. */
export function compileRule(rule: SecurityGroupRule): string {
  const field = rule.direction === "ingress" ? "ip saddr" : "ip daddr";
  let peer = "";

  if (rule.remoteGroupUuid !== undefined) {
    peer = ` ${field} @${remoteGroupSet(rule.remoteGroupUuid)}`;
  } else if (rule.cidr !== undefined) {
    peer = ` ${field} ${formatCidr(parseCidr(rule.cidr, "rule CIDR"))}`;
  }

  return `${protocolMatch(rule)}${peer}${portMatch(rule)} accept`.trim();
}

function nicChains(nic: NicSecurityRules): string[] {
  const tap = tapName(nic.nicUuid);
  const ingress = nic.rules.filter((rule) => rule.direction === "ingress").map(compileRule);
  const egress = nic.rules.filter((rule) => rule.direction === "egress").map(compileRule);

  // Egress is open until the first egress rule, then limited to the rules, as in ZStack.
  const egressDefault = egress.length > 0 ? ["drop"] : [];

  return [
    `  chain in_${tap} {`,
    `    meta mark & ${MARK} == ${MARK} accept`,
    "    ether type arp accept",
    "    udp sport 67 udp dport 68 accept",
    ...ingress.map((statement) => `    ${statement}`),
    "    drop",
    "  }",
    `  chain out_${tap} {`,
    `    meta mark & ${MARK} == ${MARK} accept`,
    "    ether type arp accept",
    "    udp sport 68 udp dport 67 accept",
    `    ip daddr ${METADATA_ADDRESS} tcp dport 80 accept`,
    ...[...egress, ...egressDefault].map((statement) => `    ${statement}`),
    "  }",
  ];
}

function remoteGroupSets(nics: readonly NicSecurityRules[], groups: Record<string, string[]>) {
  const named = new Set(
    nics.flatMap((nic) =>
      nic.rules.map((rule) => rule.remoteGroupUuid).filter((g) => g !== undefined),
    ),
  );

  return [...named].sort().flatMap((group) => {
    const members = [...new Set(groups[group] ?? [])].map((ip) => validateIpv4(ip, "member IP"));
    const elements = members.length > 0 ? [`    elements = { ${members.join(", ")} }`] : [];
    return [`  set ${remoteGroupSet(group)} {`, "    type ipv4_addr", ...elements, "  }"];
  });
}

function dispatchChain(name: string, hook: string, priority: number, map: string[]): string[] {
  const verdicts = map.length > 0 ? [`    ${hook} vmap { ${map.join(", ")} }`] : [];
  return [
    `  chain ${name} {`,
    `    type filter hook forward priority ${priority}; policy accept;`,
    ...verdicts,
    "  }",
  ];
}

/**
 * Compiles every NIC's rules to a script that replaces both tables in one transaction. Egress
 * chains run in their own base chain before the ingress one, because an accept ends only the base
 * chain it happens in, so traffic between two VMs passes both NICs' rules.
 */
export function compileSecurityGroups(
  nics: readonly NicSecurityRules[],
  remoteGroups: Record<string, string[]>,
  tables: SecurityGroupTables = securityGroupTables(),
): string {
  const sorted = [...nics].sort((a, b) => a.nicUuid.localeCompare(b.nicUuid));
  const taps = sorted.map((nic) => tapName(nic.nicUuid));
  const bridgeBody = [
    ...remoteGroupSets(sorted, remoteGroups),
    ...dispatchChain(
      "forward_out",
      "iifname",
      100,
      taps.map((t) => `"${t}" : jump out_${t}`),
    ),
    ...dispatchChain(
      "forward_in",
      "oifname",
      101,
      taps.map((t) => `"${t}" : jump in_${t}`),
    ),
    ...sorted.flatMap(nicChains),
    "",
  ].join("\n");
  const conntrackBody = [
    "  chain forward {",
    "    type filter hook forward priority 0; policy accept;",
    `    ct state established,related meta mark set meta mark | ${MARK}`,
    "  }",
    "",
  ].join("\n");

  return (
    replaceTableScript("inet", tables.conntrack, conntrackBody) +
    replaceTableScript("bridge", tables.bridge, bridgeBody)
  );
}
