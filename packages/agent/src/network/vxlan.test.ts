import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../exec.js";
import { ensureL2Network, releaseL2NetworkIfUnused } from "./bridge.js";
import { applyDhcp, releaseDhcp } from "./dhcp.js";
import { dhcpIsolationTable } from "./dhcp-isolation.js";
import { linkExists, type NetworkHost } from "./host.js";
import { tapName } from "./names.js";
import { deleteTable, tableExists } from "./nft.js";
import { Testbed } from "./testbed.js";
import type { L2VxlanSpec, L3NetworkSpec } from "./types.js";
import { listVxlanPeers, syncVxlanPeers } from "./vxlan.js";

const NIC1 = "5555555555555555555555555555aaaa";
const NIC2 = "6666666666666666666666666666bbbb";
const VM1 = { mac: "52:54:00:77:04:10", ip: "10.77.4.110", hostname: "vm1" };
const VM2 = { mac: "52:54:00:77:04:20", ip: "10.77.4.120", hostname: "vm2" };
const VTEP1 = "192.168.77.1";
const VTEP2 = "192.168.77.2";

const l2: L2VxlanSpec = {
  type: "Vxlan",
  l2NetworkUuid: "f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6",
  vni: 4242,
  vtepCidr: "192.168.77.0/24",
  peerVteps: [VTEP1, VTEP2],
};

const l3: L3NetworkSpec = {
  l3NetworkUuid: "a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7",
  l2,
  cidr: "10.77.4.0/24",
  gateway: "10.77.4.1",
  dhcpServerIp: "10.77.4.2",
  // No MTU: the agent hands out the VXLAN device's, 1450 over the 1500-byte veth underlay.
  dnsServers: [],
};

describe("VXLAN between two hosts", () => {
  const bed = new Testbed();
  let h1: NetworkHost;
  let h2: NetworkHost;
  let vm1: string;
  let vm2: string;

  beforeAll(async () => {
    await bed.init();
    h1 = await bed.addHost("h1");
    h2 = await bed.addHost("h2");

    // The underlay: one veth pair between the two host namespaces.
    await run("ip", [
      ...["-n", h1.netns!, "link", "add", "ul1", "type", "veth"],
      ...["peer", "name", "ul2", "netns", h2.netns!],
    ]);
    await run("ip", ["-n", h1.netns!, "addr", "add", `${VTEP1}/24`, "dev", "ul1"]);
    await run("ip", ["-n", h2.netns!, "addr", "add", `${VTEP2}/24`, "dev", "ul2"]);
    await run("ip", ["-n", h1.netns!, "link", "set", "dev", "ul1", "up"]);
    await run("ip", ["-n", h2.netns!, "link", "set", "dev", "ul2", "up"]);
  });

  afterAll(async () => {
    await bed.destroy();
    expect(await bed.leftoverNamespaces()).toEqual([]);
    expect(await bed.leftoverRootLinks()).toEqual([]);
  });

  it("creates bridge and VXLAN twice without change", async () => {
    const first = await ensureL2Network(h1, l2);
    const again = await ensureL2Network(h1, l2);
    await ensureL2Network(h2, l2);

    expect(again).toEqual(first);
    expect(first.uplink).toBe("vx4242");
    expect(await listVxlanPeers(h1, 4242)).toEqual([VTEP2]);
    expect(await listVxlanPeers(h2, 4242)).toEqual([VTEP1]);
  });

  it("recreates a VXLAN device with another port", async () => {
    await run("ip", ["-n", h2.netns!, "link", "delete", "vx4242"]);
    await run("ip", [
      ...["-n", h2.netns!, "link", "add", "vx4242", "type", "vxlan", "id", "4242"],
      ...["local", VTEP2, "dstport", "8472"],
    ]);

    const devices = await ensureL2Network(h2, l2);
    const { stdout } = await run("ip", ["-n", h2.netns!, "-d", "link", "show", "vx4242"]);

    expect(stdout).toMatch(/dstport 4789/);
    expect(stdout).toMatch(new RegExp(`master ${devices.bridge}`));
    expect(await listVxlanPeers(h2, 4242)).toEqual([VTEP1]);
  });

  it("syncs the head-end replication list", async () => {
    const grown = await syncVxlanPeers(h1, 4242, [VTEP2, "192.168.77.9"], VTEP1);
    expect(grown).toEqual({ added: ["192.168.77.9"], removed: [] });

    const shrunk = await syncVxlanPeers(h1, 4242, [VTEP1, VTEP2], VTEP1);
    expect(shrunk).toEqual({ added: [], removed: ["192.168.77.9"] });
    expect(await listVxlanPeers(h1, 4242)).toEqual([VTEP2]);
  });

  it("keeps a host's DHCP server from answering other hosts", async () => {
    const server = await applyDhcp(h1, { l3, entries: [VM1, VM2] });
    vm1 = await bed.addVm("vm1", h1, tapName(NIC1), server.bridge, VM1.mac);
    vm2 = await bed.addVm("vm2", h2, tapName(NIC2), server.bridge, VM2.mac);

    expect((await bed.requestLease(vm1))?.ip).toBe(VM1.ip);
    expect(await bed.requestLease(vm2)).toBeUndefined();
  });

  it("carries DHCP across VXLAN without the isolation rules", async () => {
    await deleteTable(h1, "bridge", dhcpIsolationTable(l3.l3NetworkUuid));
    const lease = await bed.requestLease(vm2);

    expect(lease?.ip).toBe(VM2.ip);
    expect(lease?.mtu).toBe("1450");
  });

  it("leases from the local server and pings across", async () => {
    await applyDhcp(h1, { l3, entries: [VM1] });
    await releaseDhcp(h1, { l3NetworkUuid: l3.l3NetworkUuid, macs: [VM2.mac] });
    await applyDhcp(h2, { l3, entries: [VM2] });
    await run("ip", ["-n", vm2, "addr", "flush", "dev", "eth0"]);

    expect(await tableExists(h1, "bridge", dhcpIsolationTable(l3.l3NetworkUuid))).toBe(true);
    expect((await bed.requestLease(vm2))?.ip).toBe(VM2.ip);
    expect(await bed.ping(vm1, VM2.ip)).toBe(true);
    expect(await bed.ping(vm2, VM1.ip)).toBe(true);
  });

  it("deletes VXLAN and bridge after the last NIC", async () => {
    await releaseDhcp(h1, { l3NetworkUuid: l3.l3NetworkUuid, macs: [VM1.mac] });
    await releaseDhcp(h2, { l3NetworkUuid: l3.l3NetworkUuid, macs: [VM2.mac] });
    await run("ip", ["-n", h1.netns!, "link", "delete", tapName(NIC1)]);
    await run("ip", ["-n", h2.netns!, "link", "delete", tapName(NIC2)]);

    for (const host of [h1, h2]) {
      expect(await releaseL2NetworkIfUnused(host, l2)).toBe(true);
      expect(await linkExists(host, "vx4242")).toBe(false);
      expect(await linkExists(host, "br_f6f6f6f6f6f6")).toBe(false);
    }
  });
});
