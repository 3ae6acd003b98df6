import { deleteLink, hostRun, ipJson, linkExists, type NetworkHost, Reverter } from "./host.js";
import { serialize } from "./lock.js";
import {
  bridgeName,
  tapName,
  validateInterfaceName,
  vlanInterfaceName,
  vxlanName,
} from "./names.js";
import type { L2NetworkSpec } from "./types.js";
import { ensureVlanInterface } from "./vlan.js";
import { ensureVxlan, findLocalVtep, syncVxlanPeers } from "./vxlan.js";

interface LinkInfo {
  ifname: string;
  master?: string;
}

/** Host devices of an L2 network. */
export interface L2Devices {
  bridge: string;
  /** Port that leaves the host: the physical interface, VLAN sub-interface or VXLAN device. */
  uplink?: string;
}

/** Returns the bridge and uplink names of an L2 network without touching the host. */
export function l2Devices(spec: L2NetworkSpec): L2Devices {
  switch (spec.type) {
    case "NoVlan":
      return {
        bridge: bridgeName(spec.l2NetworkUuid, spec.physicalInterface),
        uplink: spec.physicalInterface,
      };
    case "Vlan":
      return {
        bridge: bridgeName(spec.l2NetworkUuid),
        uplink: vlanInterfaceName(spec.physicalInterface, spec.vlanId),
      };
    case "Vxlan":
      return { bridge: bridgeName(spec.l2NetworkUuid), uplink: vxlanName(spec.vni) };
  }
}

/** Creates a Linux bridge unless it exists and sets it up. Returns whether it was created. */
export async function ensureBridge(host: NetworkHost, name: string): Promise<boolean> {
  validateInterfaceName(name, "bridge name");
  const created = !(await linkExists(host, name));

  if (created) {
    await hostRun(host, "ip", ["link", "add", "name", name, "type", "bridge"]);
  }

  await hostRun(host, "ip", ["link", "set", "dev", name, "up"]);
  return created;
}

/** Deletes a bridge. Its ports are detached, not deleted. */
export async function deleteBridge(host: NetworkHost, name: string): Promise<void> {
  await deleteLink(host, validateInterfaceName(name, "bridge name"));
}

/**
 * Enslaves a port (tap, veth, uplink) to a bridge and sets it up. It takes no lock, so callers
 * outside this directory should use `ensureTap`.
 */
export async function attachToBridge(host: NetworkHost, port: string, bridge: string) {
  validateInterfaceName(port, "bridge port");
  validateInterfaceName(bridge, "bridge name");
  await hostRun(host, "ip", ["link", "set", "dev", port, "master", bridge, "up"]);
}

/** Lists the ports of a bridge. */
export async function listBridgePorts(host: NetworkHost, bridge: string): Promise<string[]> {
  const links = await ipJson<LinkInfo>(host, ["link", "show", "master", bridge]);
  return links.map((link) => link.ifname);
}

/**
 * Creates a persistent tap for a VM NIC on the L2 network's bridge, so QEMU can open it by name
 * with `script=no`. Returns the tap's name. It queues behind a running release of that bridge, so
 * a tap never lands on a bridge that is being deleted.
 */
export function ensureTap(host: NetworkHost, nicUuid: string, bridge: string): Promise<string> {
  return serialize(`l2:${bridge}`, () => ensureTapLocked(host, nicUuid, bridge));
}

async function ensureTapLocked(host: NetworkHost, nicUuid: string, bridge: string) {
  const name = tapName(nicUuid);

  if (!(await linkExists(host, name))) {
    await hostRun(host, "ip", ["tuntap", "add", "dev", name, "mode", "tap"]);
  }

  await attachToBridge(host, name, bridge);
  return name;
}

/** Deletes a VM NIC's tap. */
export async function deleteTap(host: NetworkHost, nicUuid: string): Promise<void> {
  await deleteLink(host, tapName(nicUuid));
}

/**
 * Creates the bridge of an L2 network and its uplink, lazily when the first NIC on this host
 * needs it. Calling it again changes nothing, except that a VXLAN peer list is synced.
 * NOTE: a NoVlan physical interface is enslaved as it is, and any address on it is not moved to
 * the bridge, so it must be an interface dedicated to VM traffic.
 */
export function ensureL2Network(host: NetworkHost, spec: L2NetworkSpec): Promise<L2Devices> {
  const devices = l2Devices(spec);
  return serialize(`l2:${devices.bridge}`, () => ensureLocked(host, spec, devices));
}

async function ensureLocked(host: NetworkHost, spec: L2NetworkSpec, devices: L2Devices) {
  await Reverter.run(host.logger, async (reverter) => {
    if (await ensureBridge(host, devices.bridge)) {
      reverter.add(`delete bridge ${devices.bridge}`, () => deleteBridge(host, devices.bridge));
    }

    await ensureUplink(host, spec, devices, reverter);
  });

  host.logger.debug({ l2NetworkUuid: spec.l2NetworkUuid, ...devices }, "L2 network ensured");
  return devices;
}

async function ensureUplink(
  host: NetworkHost,
  spec: L2NetworkSpec,
  devices: L2Devices,
  reverter: Reverter,
) {
  if (devices.uplink === undefined) {
    return;
  }

  const uplink = devices.uplink;
  const existed = await linkExists(host, uplink);

  if (spec.type === "Vlan") {
    await ensureVlanInterface(host, spec.physicalInterface, spec.vlanId);
  }

  const vtep = spec.type === "Vxlan" ? await findLocalVtep(host, spec.vtepCidr) : undefined;

  if (spec.type === "Vxlan" && vtep !== undefined) {
    await ensureVxlan(host, spec.vni, vtep);
  }

  if (!existed && spec.type !== "NoVlan") {
    reverter.add(`delete uplink ${uplink}`, () => deleteLink(host, uplink));
  }

  if (spec.type === "Vxlan" && vtep !== undefined) {
    await syncVxlanPeers(host, spec.vni, spec.peerVteps, vtep.address);
  }

  await attachToBridge(host, uplink, devices.bridge);
}

/**
 * Deletes an L2 network's bridge, and its VLAN or VXLAN device, once no tap or veth other than the
 * uplink is attached. A NoVlan physical interface is only detached. Returns whether it deleted.
 */
export function releaseL2NetworkIfUnused(host: NetworkHost, spec: L2NetworkSpec): Promise<boolean> {
  const devices = l2Devices(spec);
  return serialize(`l2:${devices.bridge}`, () => releaseLocked(host, spec, devices));
}

async function releaseLocked(host: NetworkHost, spec: L2NetworkSpec, devices: L2Devices) {
  if (!(await linkExists(host, devices.bridge))) {
    return false;
  }

  const ports = await listBridgePorts(host, devices.bridge);
  const users = ports.filter((port) => port !== devices.uplink);

  if (users.length > 0) {
    return false;
  }

  if (devices.uplink !== undefined && spec.type === "NoVlan") {
    await hostRun(host, "ip", ["link", "set", "dev", devices.uplink, "nomaster"]);
  } else if (devices.uplink !== undefined) {
    await deleteLink(host, devices.uplink);
  }

  await deleteBridge(host, devices.bridge);
  host.logger.info({ l2NetworkUuid: spec.l2NetworkUuid, ...devices }, "L2 network released");
  return true;
}
