import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../exec.js";
import { attachToBridge, ensureL2Network, releaseL2NetworkIfUnused } from "./bridge.js";
import { applyDhcpIsolation, removeDhcpIsolation } from "./dhcp-isolation.js";
import {
  type DnsmasqFiles,
  METADATA_ADDRESS,
  normalizeMac,
  renderDnsmasqConf,
  renderHostsFile,
  validateDhcpEntry,
} from "./dnsmasq-config.js";
import {
  hostRun,
  ipJson,
  linkExists,
  listNamespaces,
  type NetworkHost,
  namespaceRun,
  Reverter,
} from "./host.js";
import { parseCidr, validateIpv4 } from "./ipv4.js";
import { serialize } from "./lock.js";
import { ensureMetadataServer, stopMetadataServer } from "./metadata.js";
import { dhcpNamespaceName, dhcpVethNames } from "./names.js";
import { readLivePid, stopProcess, waitFor } from "./process.js";
import { l3StateDir, writeFileAtomic } from "./state.js";
import type { ApplyDhcpCmd, DhcpEntry, L3NetworkSpec, ReleaseDhcpCmd } from "./types.js";

const DNSMASQ_START_TIMEOUT_MS = 10_000;

/** Location of an L3 network's DHCP server on this host. */
export interface DhcpServer {
  namespace: string;
  /** Interface inside the namespace that carries the DHCP server and metadata addresses. */
  interfaceName: string;
  bridge: string;
  stateDir: string;
}

function dnsmasqFiles(dir: string): DnsmasqFiles {
  return {
    conf: join(dir, "dnsmasq.conf"),
    hosts: join(dir, "dhcp-hosts"),
    leases: join(dir, "dnsmasq.leases"),
    pid: join(dir, "dnsmasq.pid"),
    log: join(dir, "dnsmasq.log"),
  };
}

/**
 * Prepares an L3 network's DHCP server on this host: the L2 bridge, a namespace joined to it by a
 * veth pair, the DHCP server and metadata addresses, dnsmasq, the metadata server and the rules
 * that keep DHCP on this host. Each step is skipped when already done, and a failed first
 * prepare undoes what it created.
 */
export function prepareDhcpServer(host: NetworkHost, l3: L3NetworkSpec): Promise<DhcpServer> {
  return serialize(lockKey(l3.l3NetworkUuid), () => prepareLocked(host, l3));
}

function lockKey(l3NetworkUuid: string) {
  return `dhcp:${l3NetworkUuid}`;
}

async function prepareLocked(host: NetworkHost, l3: L3NetworkSpec): Promise<DhcpServer> {
  const namespace = dhcpNamespaceName(l3.l3NetworkUuid, host.namespacePrefix);
  const veth = dhcpVethNames(l3.l3NetworkUuid);
  const dir = l3StateDir(host, l3.l3NetworkUuid);

  // Rendering checks every address, name and number before the host changes at all.
  renderDnsmasqConf(l3, veth.namespaceEnd, dnsmasqFiles(dir));

  return Reverter.run(host.logger, async (reverter) => {
    reverter.add("release L2 network", () => releaseL2NetworkIfUnused(host, l3.l2));
    const devices = await ensureL2Network(host, l3.l2);
    const server = {
      namespace,
      interfaceName: veth.namespaceEnd,
      bridge: devices.bridge,
      stateDir: dir,
    };

    await ensureNamespace(namespace, reverter);
    await ensureVeth(host, server, veth.bridgeEnd, reverter);
    await configureAddresses(server, l3);

    if ((await mkdir(dir, { recursive: true, mode: 0o755 })) !== undefined) {
      reverter.add(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
    }

    const spec = await withTunnelMtu(host, l3, devices.uplink);
    await writeFileAtomic(join(dir, "l3.json"), `${JSON.stringify(spec, null, 2)}\n`);
    await ensureDnsmasq(host, server, spec, reverter);

    if (await ensureMetadataServer(host, server, l3)) {
      reverter.add("stop metadata server", () => stopMetadataServer(host, l3.l3NetworkUuid));
    }

    if (devices.uplink !== undefined) {
      await applyDhcpIsolation(host, l3.l3NetworkUuid, devices.uplink, l3.dhcpServerIp);
    }

    return server;
  });
}

/**
 * Gives a VXLAN network without an MTU the MTU of its VXLAN device, which the kernel sets to the
 * underlay's minus the 50 bytes of encapsulation. Guests left at 1500 bytes would send frames
 * that the bridge drops before the tunnel.
 */
async function withTunnelMtu(host: NetworkHost, l3: L3NetworkSpec, uplink: string | undefined) {
  if (l3.mtu !== undefined || l3.l2.type !== "Vxlan" || uplink === undefined) {
    return l3;
  }

  const [link] = await ipJson<{ mtu?: number }>(host, ["link", "show", "dev", uplink]);
  return link?.mtu === undefined ? l3 : { ...l3, mtu: link.mtu };
}

async function ensureNamespace(namespace: string, reverter: Reverter) {
  if ((await listNamespaces()).includes(namespace)) {
    return;
  }

  await namespaceCommand(["netns", "add", namespace]);
  reverter.add(`delete namespace ${namespace}`, () =>
    namespaceCommand(["netns", "delete", namespace]),
  );
  await namespaceRun(namespace, "ip", ["link", "set", "dev", "lo", "up"]);
}

/** Runs `ip netns` in the agent's own namespace, because namespace names are global. */
function namespaceCommand(args: string[]) {
  return run("ip", args);
}

async function ensureVeth(
  host: NetworkHost,
  server: DhcpServer,
  bridgeEnd: string,
  reverter: Reverter,
) {
  const bridgeEndExists = await linkExists(host, bridgeEnd);
  const peerPresent =
    bridgeEndExists &&
    (
      await namespaceRun(server.namespace, "ip", ["link", "show", "dev", server.interfaceName], {
        okExitCodes: [1],
      })
    ).exitCode === 0;

  // A namespace deleted while a process still ran in it lives on with the old peer, and a new
  // namespace of the same name lacks it; the orphaned bridge end must go before a new pair.
  if (bridgeEndExists && !peerPresent) {
    host.logger.warn(
      { bridgeEnd, namespace: server.namespace },
      "replacing a DHCP veth whose peer is missing",
    );
    await hostRun(host, "ip", ["link", "delete", "dev", bridgeEnd]);
  }

  if (!peerPresent) {
    await hostRun(host, "ip", [
      ...["link", "add", bridgeEnd, "type", "veth"],
      ...["peer", "name", server.interfaceName, "netns", server.namespace],
    ]);
    reverter.add(`delete veth ${bridgeEnd}`, () =>
      hostRun(host, "ip", ["link", "delete", "dev", bridgeEnd]),
    );
  }

  await attachToBridge(host, bridgeEnd, server.bridge);
}

async function configureAddresses(server: DhcpServer, l3: L3NetworkSpec) {
  const prefix = parseCidr(l3.cidr, "L3 network CIDR").prefixLength;
  const address = `${validateIpv4(l3.dhcpServerIp, "DHCP server address")}/${prefix}`;
  const dev = server.interfaceName;

  await namespaceRun(server.namespace, "ip", ["addr", "replace", address, "dev", dev]);
  await namespaceRun(server.namespace, "ip", [
    "addr",
    "replace",
    `${METADATA_ADDRESS}/32`,
    "dev",
    dev,
  ]);
  await namespaceRun(server.namespace, "ip", ["link", "set", "dev", dev, "up"]);
}

/**
 * Starts dnsmasq in the namespace unless it already runs with the same configuration. A changed
 * configuration restarts it. dnsmasq forks itself and writes its pid file, so it survives an agent
 * restart and is found again by that file.
 */
async function ensureDnsmasq(
  host: NetworkHost,
  server: DhcpServer,
  l3: L3NetworkSpec,
  reverter: Reverter,
) {
  const files = dnsmasqFiles(server.stateDir);
  const conf = renderDnsmasqConf(l3, server.interfaceName, files);
  const previous = await readFile(files.conf, "utf8").catch(() => undefined);
  const running = await readLivePid(files.pid, files.conf);

  if (running !== undefined && previous === conf) {
    return;
  }

  if (running !== undefined) {
    host.logger.info({ l3NetworkUuid: l3.l3NetworkUuid, pid: running }, "restarting dnsmasq");
    await stopProcess(running);
  }

  await writeFileAtomic(files.conf, conf);
  await writeFile(files.hosts, "", { flag: "a", mode: 0o644 });
  await namespaceRun(server.namespace, "dnsmasq", [`--conf-file=${files.conf}`], {
    timeoutMs: DNSMASQ_START_TIMEOUT_MS,
  });
  reverter.add("stop dnsmasq", async () => {
    const pid = await readLivePid(files.pid, files.conf);
    return pid === undefined ? undefined : stopProcess(pid);
  });
  await waitFor(
    async () => (await readLivePid(files.pid, files.conf)) !== undefined,
    DNSMASQ_START_TIMEOUT_MS,
    `dnsmasq pid file ${files.pid}`,
  );
  host.logger.info({ l3NetworkUuid: l3.l3NetworkUuid, ns: server.namespace }, "dnsmasq started");
}

/** Reads the DHCP reservations of an L3 network on this host. */
export async function readDhcpEntries(host: NetworkHost, l3NetworkUuid: string) {
  const { hosts } = dnsmasqFiles(l3StateDir(host, l3NetworkUuid));
  const text = await readFile(hosts, "utf8").catch(() => "");
  const entries: DhcpEntry[] = [];

  for (const line of text.split("\n")) {
    const [mac, ip, hostname] = line.split(",");

    if (mac && ip && hostname) {
      entries.push({ mac, ip, hostname });
    }
  }

  return entries;
}

async function writeEntriesAndReload(
  host: NetworkHost,
  l3NetworkUuid: string,
  entries: DhcpEntry[],
) {
  const files = dnsmasqFiles(l3StateDir(host, l3NetworkUuid));
  await writeFileAtomic(files.hosts, renderHostsFile(entries));
  const pid = await readLivePid(files.pid, files.conf);

  // dnsmasq rereads --dhcp-hostsfile on SIGHUP without dropping its leases.
  if (pid !== undefined) {
    process.kill(pid, "SIGHUP");
  }
}

/**
 * Adds or replaces DHCP reservations of an L3 network, preparing its DHCP server first. An entry
 * replaces any earlier one with the same MAC or the same address.
 */
export function applyDhcp(host: NetworkHost, cmd: ApplyDhcpCmd): Promise<DhcpServer> {
  return serialize(lockKey(cmd.l3.l3NetworkUuid), () => applyLocked(host, cmd));
}

async function applyLocked(host: NetworkHost, cmd: ApplyDhcpCmd): Promise<DhcpServer> {
  const added = cmd.entries.map(validateDhcpEntry);
  const server = await prepareLocked(host, cmd.l3);
  const current = await readDhcpEntries(host, cmd.l3.l3NetworkUuid);
  const kept = current.filter((old) => !added.some((e) => e.mac === old.mac || e.ip === old.ip));

  await writeEntriesAndReload(host, cmd.l3.l3NetworkUuid, [...kept, ...added]);
  host.logger.info(
    { l3NetworkUuid: cmd.l3.l3NetworkUuid, macs: added.map((e) => e.mac) },
    "DHCP entries applied",
  );
  return server;
}

/**
 * Removes DHCP reservations by MAC. When the last one goes, the L3 network's namespace, dnsmasq,
 * metadata server and rules are deleted, and the L2 bridge too if nothing else uses it.
 */
export function releaseDhcp(host: NetworkHost, cmd: ReleaseDhcpCmd) {
  return serialize(lockKey(cmd.l3NetworkUuid), () => releaseLocked(host, cmd));
}

async function releaseLocked(host: NetworkHost, cmd: ReleaseDhcpCmd) {
  const macs = new Set(cmd.macs.map(normalizeMac));
  const current = await readDhcpEntries(host, cmd.l3NetworkUuid);
  const kept = current.filter((entry) => !macs.has(entry.mac));

  if (kept.length > 0) {
    await writeEntriesAndReload(host, cmd.l3NetworkUuid, kept);
    return { serverDeleted: false };
  }

  await deleteLocked(host, cmd.l3NetworkUuid);
  return { serverDeleted: true };
}

/** Deletes an L3 network's DHCP server on this host and every file and rule it used. */
export function deleteDhcpServer(host: NetworkHost, l3NetworkUuid: string): Promise<void> {
  return serialize(lockKey(l3NetworkUuid), () => deleteLocked(host, l3NetworkUuid));
}

async function deleteLocked(host: NetworkHost, l3NetworkUuid: string): Promise<void> {
  const dir = l3StateDir(host, l3NetworkUuid);
  const files = dnsmasqFiles(dir);
  const namespace = dhcpNamespaceName(l3NetworkUuid, host.namespacePrefix);
  const l3 = await readFile(join(dir, "l3.json"), "utf8")
    .then((text) => JSON.parse(text) as L3NetworkSpec)
    .catch(() => undefined);
  const pid = await readLivePid(files.pid, files.conf);

  if (pid !== undefined) {
    await stopProcess(pid);
  }

  await stopMetadataServer(host, l3NetworkUuid);
  await removeDhcpIsolation(host, l3NetworkUuid);

  // Deleting the namespace destroys its veth end, and with it the bridge end.
  if ((await listNamespaces()).includes(namespace)) {
    await namespaceCommand(["netns", "delete", namespace]);
  }

  await rm(dir, { recursive: true, force: true });

  if (l3 !== undefined) {
    await waitFor(
      async () => !(await linkExists(host, dhcpVethNames(l3NetworkUuid).bridgeEnd)),
      5000,
      "the DHCP veth to disappear",
    );
    await releaseL2NetworkIfUnused(host, l3.l2);
  }

  host.logger.info({ l3NetworkUuid, ns: namespace }, "DHCP server deleted");
}
