import { describe, expect, it } from "vitest";
import { run } from "../exec.js";
import { vlanLinkArgs } from "./vlan.js";

describe("VLAN sub-interface", () => {
  it("builds the ip link arguments", () => {
    expect(vlanLinkArgs("eth1", 100)).toEqual([
      ...["link", "add", "link", "eth1", "name", "eth1.100", "type", "vlan", "id", "100"],
    ]);
  });

  it("rejects an invalid parent interface", () => {
    expect(() => vlanLinkArgs("eth1;x", 100)).toThrow(/invalid physical interface/);
  });

  it("rejects VLAN id 4095", () => {
    expect(() => vlanLinkArgs("eth1", 4095)).toThrow(/invalid VLAN id/);
  });

  it("creates a real sub-interface when the kernel supports 802.1Q", async (context) => {
    const netns = `tqn-vlan-${process.pid}`;
    await run("ip", ["netns", "add", netns]);

    try {
      await run("ip", ["-n", netns, "link", "add", "tqnp", "type", "veth", "peer", "tqnq"]);
      const probe = await run("ip", ["-n", netns, ...vlanLinkArgs("tqnp", 100)], {
        okExitCodes: [1, 2],
      });

      if (probe.exitCode !== 0) {
        context.skip(`this kernel cannot create 802.1Q links: ${probe.stderr.trim()}`);
      }

      const { stdout } = await run("ip", ["-n", netns, "-d", "link", "show", "tqnp.100"]);
      expect(stdout).toMatch(/vlan protocol 802.1Q id 100/);
    } finally {
      await run("ip", ["netns", "delete", netns]);
    }
  });
});
