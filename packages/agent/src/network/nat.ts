import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { ensureL2Network, l2Devices } from "./bridge.js";
import { hostRun, linkExists, type NetworkHost } from "./host.js";
import { formatCidr, parseCidr, validateIpv4 } from "./ipv4.js";
import { serialize } from "./lock.js";
import { validateUuid } from "./names.js";
import { applyNftScript, deleteTable, replaceTableScript } from "./nft.js";
import { writeFileAtomic } from "./state.js";
import type { NatCmd } from "./types.js";

/** Inet table with the masquerade rules of every NATed L3 network on this host. */
export const NAT_TABLE = "tstack_nat";

const LOCK_KEY = "nat";

/** One L3 network with outbound NAT on this host. */
export interface NatEntry {
  l3NetworkUuid: string;
  cidr: string;
  bridge: string;
}

function stateDir(host: NetworkHost): string {
  return join(host.stateDir, "nat");
}

async function readEntries(host: NetworkHost): Promise<NatEntry[]> {
  const names = await readdir(stateDir(host)).catch(() => [] as string[]);
  const entries: NatEntry[] = [];

  for (const name of names.filter((n) => /^[0-9a-f]{32}\.json$/.test(n))) {
    entries.push(JSON.parse(await readFile(join(stateDir(host), name), "utf8")) as NatEntry);
  }

  return entries.sort((a, b) => a.l3NetworkUuid.localeCompare(b.l3NetworkUuid));
}

/**
 * Compiles the NAT table: traffic from an L3 network's CIDR is masqueraded on every interface
 * except the L3's own bridge, so VM-to-VM traffic keeps its addresses.
 */
export function compileNat(entries: readonly NatEntry[]): string {
  const rules = entries.map(
    (e) => `    ip saddr ${e.cidr} oifname != ${JSON.stringify(e.bridge)} masquerade`,
  );
  // Guests use the host as their gateway only: they may ping it and get replies to connections
  // the host opened, but cannot open connections to the host's own services, the management
  // API among them.
  const guards = entries.map(
    (e) =>
      `    iifname ${JSON.stringify(e.bridge)} ip saddr ${e.cidr} ct state new meta l4proto != icmp drop`,
  );
  const body = [
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    ...rules,
    "  }",
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    ...guards,
    "  }",
    "",
  ].join("\n");

  return replaceTableScript("inet", NAT_TABLE, body);
}

async function loadTable(host: NetworkHost) {
  const entries = await readEntries(host);

  if (entries.length === 0) {
    await deleteTable(host, "inet", NAT_TABLE);
    return;
  }

  await applyNftScript(host, compileNat(entries));
}

/**
 * Makes this host the gateway of an L3 network with outbound NAT: the gateway address on the L3's
 * bridge, IPv4 forwarding on, and a masquerade rule for the L3's CIDR. Repeating it changes nothing.
 * NOTE: on an L2 network shared by several hosts each host then replies to ARP requests for
 * the gateway address, and no rule yet keeps them from crossing the uplink.
 */
export function applyNat(host: NetworkHost, cmd: NatCmd): Promise<void> {
  return serialize(LOCK_KEY, () => applyLocked(host, cmd));
}

async function applyLocked(host: NetworkHost, cmd: NatCmd) {
  const { l3 } = cmd;
  const cidr = parseCidr(l3.cidr, "L3 network CIDR");
  const gateway = `${validateIpv4(l3.gateway, "gateway")}/${cidr.prefixLength}`;
  const { bridge } = await ensureL2Network(host, l3.l2);
  const entry = { l3NetworkUuid: validateUuid(l3.l3NetworkUuid), cidr: formatCidr(cidr), bridge };

  await hostRun(host, "ip", ["addr", "replace", gateway, "dev", bridge]);
  await hostRun(host, "sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
  await mkdir(stateDir(host), { recursive: true });
  await writeFileAtomic(join(stateDir(host), `${entry.l3NetworkUuid}.json`), JSON.stringify(entry));

  try {
    await loadTable(host);
  } catch (error) {
    await rm(join(stateDir(host), `${entry.l3NetworkUuid}.json`), { force: true });
    throw error;
  }

  host.logger.info({ l3NetworkUuid: l3.l3NetworkUuid, bridge }, "NAT applied");
}

/**
 * Removes an L3 network's masquerade rule and gateway address. IPv4 forwarding stays on, because
 * other L3 networks or host services may rely on it.
 */
export function removeNat(host: NetworkHost, cmd: NatCmd): Promise<void> {
  return serialize(LOCK_KEY, () => removeLocked(host, cmd));
}

async function removeLocked(host: NetworkHost, cmd: NatCmd) {
  const { l3 } = cmd;
  const cidr = parseCidr(l3.cidr, "L3 network CIDR");
  const gateway = `${validateIpv4(l3.gateway, "gateway")}/${cidr.prefixLength}`;
  const { bridge } = l2Devices(l3.l2);

  await rm(join(stateDir(host), `${validateUuid(l3.l3NetworkUuid)}.json`), { force: true });
  await loadTable(host);

  if (await linkExists(host, bridge)) {
    await hostRun(host, "ip", ["addr", "del", gateway, "dev", bridge], { okExitCodes: [2] });
  }

  host.logger.info({ l3NetworkUuid: l3.l3NetworkUuid, bridge }, "NAT removed");
}
