import { describe, expect, it } from "vitest";
import {
  bridgeName,
  dhcpNamespaceName,
  dhcpVethNames,
  InvalidNameError,
  tapName,
  vlanInterfaceName,
  vxlanName,
} from "./names.js";

const L2 = "0123456789abcdef0123456789abcdef";
const L3 = "fedcba9876543210fedcba9876543210";

describe("host names", () => {
  it("bridge uses the physical interface when it fits", () => {
    expect(bridgeName(L2, "eth0")).toBe("br_eth0");
  });

  it("bridge falls back to the short id for long interfaces", () => {
    expect(bridgeName(L2, "enx001122334455")).toBe("br_0123456789ab");
  });

  it("bridge without interface uses the short id", () => {
    expect(bridgeName(L2)).toBe("br_0123456789ab");
  });

  it("all names fit in 15 characters", () => {
    const names = [
      bridgeName(L2),
      vxlanName(16_777_215),
      tapName(L2),
      dhcpVethNames(L3).bridgeEnd,
      dhcpVethNames(L3).namespaceEnd,
      vlanInterfaceName("enp0s31f6", 4094),
    ];

    for (const name of names) {
      expect(name.length, name).toBeLessThanOrEqual(15);
    }
  });

  it("VXLAN device is vx and the VNI", () => {
    expect(vxlanName(4096)).toBe("vx4096");
  });

  it("DHCP namespace carries the prefix", () => {
    expect(dhcpNamespaceName(L3, "tqn-a-")).toBe("tqn-a-dhcp-fedcba987654");
  });

  it.each([
    ["upper case", "0123456789ABCDEF0123456789ABCDEF"],
    ["dashes", "01234567-89ab-cdef-0123-456789abcdef"],
    ["too short", "0123"],
    ["path", "../../../../etc/passwd00000000000"],
  ])("rejects uuid with %s", (_case, uuid) => {
    expect(() => tapName(uuid)).toThrow(InvalidNameError);
    expect(() => tapName(uuid)).toThrow(JSON.stringify(uuid));
  });

  it.each(["", "-eth0", "eth 0", "a/b", "..", "eth0;reboot", "abcdefghijklmnop"])(
    "rejects interface %j",
    (name) => {
      expect(() => bridgeName(L2, name)).toThrow(InvalidNameError);
    },
  );

  it.each([0, -1, 16_777_216, 1.5, Number.NaN])("rejects VNI %s", (vni) => {
    expect(() => vxlanName(vni)).toThrow(/invalid VNI/);
  });

  it("rejects VLAN interface longer than 15", () => {
    expect(() => vlanInterfaceName("enx001122334455", 100)).toThrow(/VLAN interface name/);
  });

  it.each([0, 4095])("rejects VLAN id %s", (vlanId) => {
    expect(() => vlanInterfaceName("eth0", vlanId)).toThrow(/invalid VLAN id/);
  });

  it("rejects namespace prefix with a slash", () => {
    expect(() => dhcpNamespaceName(L3, "a/")).toThrow(/namespace prefix/);
  });
});
