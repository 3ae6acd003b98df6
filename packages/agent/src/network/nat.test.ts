import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../exec.js";
import { l2Devices, releaseL2NetworkIfUnused } from "./bridge.js";
import type { NetworkHost } from "./host.js";
import { tapName } from "./names.js";
import { applyNat, removeNat } from "./nat.js";
import { tableExists } from "./nft.js";
import { Testbed } from "./testbed.js";
import type { L3NetworkSpec } from "./types.js";

const NIC = "4444444444444444444444444444cccc";
const OUTSIDE = "192.0.2.2";

const l3: L3NetworkSpec = {
  l3NetworkUuid: "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4",
  l2: { type: "NoVlan", l2NetworkUuid: "e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5" },
  cidr: "10.77.3.0/24",
  gateway: "10.77.3.1",
  dhcpServerIp: "10.77.3.2",
  dnsServers: [],
};

describe("outbound NAT", () => {
  const bed = new Testbed();
  let host: NetworkHost;
  let vm: string;
  let outside: string;

  beforeAll(async () => {
    await bed.init();
    host = await bed.addHost("h1");
    outside = await bed.addNamespace("out");

    // The outside namespace has no route back to the L3 network: only masquerade makes replies
    // come back.
    await run("ip", [
      ...["-n", host.netns!, "link", "add", "up0", "type", "veth"],
      ...["peer", "name", "eth0", "netns", outside],
    ]);
    await run("ip", ["-n", host.netns!, "addr", "add", "192.0.2.1/24", "dev", "up0"]);
    await run("ip", ["-n", host.netns!, "link", "set", "dev", "up0", "up"]);
    await run("ip", ["-n", outside, "addr", "add", `${OUTSIDE}/24`, "dev", "eth0"]);
    await run("ip", ["-n", outside, "link", "set", "dev", "eth0", "up"]);
  });

  afterAll(async () => {
    await bed.destroy();
    expect(await bed.leftoverNamespaces()).toEqual([]);
    expect(await bed.leftoverRootLinks()).toEqual([]);
  });

  it("masquerades the L3 network to the outside", async () => {
    await applyNat(host, { l3 });
    await applyNat(host, { l3 });
    const { bridge } = l2Devices(l3.l2);
    vm = await bed.addVm("vm", host, tapName(NIC), bridge, "52:54:00:00:03:10");
    await run("ip", ["-n", vm, "addr", "add", "10.77.3.10/24", "dev", "eth0"]);
    await run("ip", ["-n", vm, "route", "add", "default", "via", "10.77.3.1"]);

    expect(await bed.ping(vm, "10.77.3.1")).toBe(true);
    expect(await bed.ping(vm, OUTSIDE)).toBe(true);
  });

  it("installs one masquerade rule per L3 network", async () => {
    const { stdout } = await run("ip", [
      "netns",
      "exec",
      host.netns!,
      "nft",
      "list",
      "table",
      "inet",
      "tstack_nat",
    ]);

    expect(stdout).toContain('ip saddr 10.77.3.0/24 oifname != "br_e5e5e5e5e5e5" masquerade');
  });

  it("stops translating after removal", async () => {
    await removeNat(host, { l3 });
    await removeNat(host, { l3 });

    expect(await bed.ping(vm, OUTSIDE)).toBe(false);
    expect(await tableExists(host, "inet", "tstack_nat")).toBe(false);

    await run("ip", ["-n", host.netns!, "link", "delete", tapName(NIC)]);
    expect(await releaseL2NetworkIfUnused(host, l3.l2)).toBe(true);
  });
});
