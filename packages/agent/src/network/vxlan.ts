import { deleteLink, hostRun, ipJson, type NetworkHost } from "./host.js";
import { cidrContains, parseCidr, validateIpv4 } from "./ipv4.js";
import { vxlanName } from "./names.js";

/** IANA's VXLAN UDP port; the kernel's default 8472 is Linux's pre-standard choice. */
export const VXLAN_PORT = 4789;

const FLOOD_MAC = "00:00:00:00:00:00";

interface AddressInfo {
  ifname: string;
  addr_info?: { family: string; local: string }[];
}

interface VxlanLinkInfo {
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; port?: number } };
}

interface FdbEntry {
  mac: string;
  dst?: string;
}

/** A VTEP address of this host and the interface that carries it. */
export interface LocalVtep {
  address: string;
  interfaceName: string;
}

/**
 * Picks this host's VTEP: the first IPv4 address inside the VTEP CIDR. Only addresses already
 * configured on the host are looked at; nothing is probed on the network.
 */
export async function findLocalVtep(host: NetworkHost, vtepCidr: string): Promise<LocalVtep> {
  const cidr = parseCidr(vtepCidr, "VTEP CIDR");
  const links = await ipJson<AddressInfo>(host, ["-4", "addr", "show"]);

  for (const link of links) {
    for (const info of link.addr_info ?? []) {
      if (info.family === "inet" && cidrContains(cidr, info.local)) {
        return { address: info.local, interfaceName: link.ifname };
      }
    }
  }

  throw new Error(
    `no address of this host lies in VTEP CIDR ${vtepCidr}: add one to the host's underlay ` +
      "interface or fix the VXLAN pool's CIDR",
  );
}

/**
 * Creates the VXLAN device of a VNI with the given local VTEP, or recreates it when an existing
 * one has another VNI, VTEP or port. Learning stays on: with no control plane distributing MAC
 * addresses, the device learns each remote MAC's VTEP from traffic, and the all-zero FDB entries
 * flood only broadcast and unknown unicast to every peer.
 */
export async function ensureVxlan(
  host: NetworkHost,
  vni: number,
  vtep: LocalVtep,
): Promise<string> {
  const name = vxlanName(vni);
  const [existing] = await ipJson<VxlanLinkInfo>(host, ["-d", "link", "show", "dev", name]).catch(
    () => [] as VxlanLinkInfo[],
  );
  const data = existing?.linkinfo?.info_data;
  const matches =
    existing?.linkinfo?.info_kind === "vxlan" &&
    data?.id === vni &&
    data.local === vtep.address &&
    data.port === VXLAN_PORT;

  if (existing !== undefined && !matches) {
    host.logger.warn({ device: name, found: data }, "recreating VXLAN device with other settings");
    await deleteLink(host, name);
  }

  if (!matches) {
    await hostRun(host, "ip", [
      ...["link", "add", name, "type", "vxlan", "id", String(vni)],
      ...["local", vtep.address, "dev", vtep.interfaceName, "dstport", String(VXLAN_PORT)],
    ]);
  }

  return name;
}

/** Lists the peer VTEPs that get flooded traffic of a VXLAN device. */
export async function listVxlanPeers(host: NetworkHost, vni: number): Promise<string[]> {
  const { stdout } = await hostRun(host, "bridge", ["-j", "fdb", "show", "dev", vxlanName(vni)]);
  const entries = stdout.trim() === "" ? [] : (JSON.parse(stdout) as FdbEntry[]);
  return entries.filter((e) => e.mac === FLOOD_MAC && e.dst).map((e) => e.dst!);
}

/**
 * Makes the head-end replication list of a VXLAN device equal to `peerVteps`: adds an all-zero FDB
 * entry for each missing peer and deletes the entries of peers no longer listed. The local VTEP is
 * skipped when the list contains it, so callers can pass every host's VTEP of the cluster.
 */
export async function syncVxlanPeers(
  host: NetworkHost,
  vni: number,
  peerVteps: readonly string[],
  localVtep?: string,
): Promise<{ added: string[]; removed: string[] }> {
  const device = vxlanName(vni);
  const desired = new Set(peerVteps.map((peer) => validateIpv4(peer, "peer VTEP")));

  if (localVtep !== undefined) {
    desired.delete(localVtep);
  }

  const current = new Set(await listVxlanPeers(host, vni));
  const added = [...desired].filter((peer) => !current.has(peer));
  const removed = [...current].filter((peer) => !desired.has(peer));

  for (const peer of added) {
    await hostRun(host, "bridge", ["fdb", "append", FLOOD_MAC, "dst", peer, "dev", device]);
  }

  for (const peer of removed) {
    await hostRun(host, "bridge", ["fdb", "delete", FLOOD_MAC, "dst", peer, "dev", device]);
  }

  return { added, removed };
}
