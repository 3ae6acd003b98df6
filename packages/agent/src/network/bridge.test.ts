import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../exec.js";
import {
  deleteTap,
  ensureL2Network,
  ensureTap,
  listBridgePorts,
  releaseL2NetworkIfUnused,
} from "./bridge.js";
import { linkExists, type NetworkHost } from "./host.js";
import { Testbed } from "./testbed.js";
import type { L2NoVlanSpec } from "./types.js";

const NIC = "7777777777777777777777777777dddd";

const l2: L2NoVlanSpec = {
  type: "NoVlan",
  l2NetworkUuid: "c9c9c9c9c9c9c9c9c9c9c9c9c9c9c9c9",
  physicalInterface: "phy0",
};

describe("NoVlan bridge with a tap", () => {
  const bed = new Testbed();
  let host: NetworkHost;

  beforeAll(async () => {
    await bed.init();
    host = await bed.addHost("h1");

    // A veth end plays the physical interface.
    await run("ip", ["-n", host.netns!, "link", "add", "phy0", "type", "veth", "peer", "phy1"]);
  });

  afterAll(async () => {
    await bed.destroy();
    expect(await bed.leftoverNamespaces()).toEqual([]);
    expect(await bed.leftoverRootLinks()).toEqual([]);
  });

  it("enslaves the physical interface once", async () => {
    const first = await ensureL2Network(host, l2);
    const again = await ensureL2Network(host, l2);

    expect(first).toEqual({ bridge: "br_phy0", uplink: "phy0" });
    expect(again).toEqual(first);
    expect(await listBridgePorts(host, "br_phy0")).toEqual(["phy0"]);
  });

  it("creates the NIC's tap once", async () => {
    const tap = await ensureTap(host, NIC, "br_phy0");
    await ensureTap(host, NIC, "br_phy0");

    expect(tap).toBe("tap777777777777");
    expect((await listBridgePorts(host, "br_phy0")).sort()).toEqual(["phy0", tap]);
  });

  it("keeps the bridge while the tap exists", async () => {
    expect(await releaseL2NetworkIfUnused(host, l2)).toBe(false);
    expect(await linkExists(host, "br_phy0")).toBe(true);
  });

  it("deletes the bridge but keeps the interface", async () => {
    await deleteTap(host, NIC);
    await deleteTap(host, NIC);

    expect(await releaseL2NetworkIfUnused(host, l2)).toBe(true);
    expect(await releaseL2NetworkIfUnused(host, l2)).toBe(false);
    expect(await linkExists(host, "br_phy0")).toBe(false);
    expect(await linkExists(host, "phy0")).toBe(true);
  });
});
