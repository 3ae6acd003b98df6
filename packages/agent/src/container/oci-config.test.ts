import { describe, expect, it } from "vitest";
import { ValidationError } from "../validate.js";
import { buildOciConfig, CONTAINER_CAPABILITIES, DENIED_SYSCALLS } from "./oci-config.js";
import { containerPaths } from "./paths.js";
import { resolveContainerSpec } from "./spec.js";
import type { ContainerSpec } from "./types.js";

const vmUuid = "0123456789abcdef0123456789abcdef";

function input(overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    hypervisorType: "Container",
    vmUuid,
    memoryMiB: 256,
    cpuNum: 2,
    rootfs: { imageUuid: "f".repeat(32), tarPath: "/var/lib/images/busybox.tar.gz" },
    nics: [{ mac: "52:54:00:00:00:01", bridgeName: "br_l2" }],
    ...overrides,
  };
}

function config(overrides: Partial<ContainerSpec> = {}) {
  const paths = containerPaths("/var/lib/tstack-agent", vmUuid);
  const names = {
    containerId: `tct${vmUuid}`,
    netnsPath: `/run/netns/tct${vmUuid}`,
    cgroupsPath: `/tct${vmUuid}`,
  };
  return buildOciConfig(resolveContainerSpec(input(overrides)), paths, names);
}

describe("OCI config", () => {
  it("sets limits from the spec", () => {
    const { resources } = config().linux;

    expect(resources.memory.limit).toBe(256 * 1024 * 1024);
    expect(resources.cpu).toEqual({ shares: 2048, quota: 200_000, period: 100_000 });
    expect(resources.pids.limit).toBe(1024);
    expect(resources.devices).toEqual([{ allow: false, access: "rwm" }]);
  });

  it("takes explicit shares and pids", () => {
    const { resources } = config({ cpuShares: 512, pidsLimit: 64 }).linux;

    expect(resources.cpu.shares).toBe(512);
    expect(resources.pids.limit).toBe(64);
  });

  it("joins the agent's network namespace", () => {
    const { namespaces, cgroupsPath } = config().linux;

    expect(namespaces.map((namespace) => namespace.type).sort()).toEqual([
      "cgroup",
      "ipc",
      "mount",
      "network",
      "pid",
      "uts",
    ]);
    expect(namespaces.find((namespace) => namespace.type === "network")).toEqual({
      type: "network",
      path: `/run/netns/tct${vmUuid}`,
    });
    expect(cgroupsPath).toBe(`/tct${vmUuid}`);
  });

  it("drops host-wide capabilities", () => {
    const { capabilities, noNewPrivileges } = config().process;

    for (const set of [capabilities.bounding, capabilities.effective, capabilities.permitted]) {
      expect(set).toEqual(CONTAINER_CAPABILITIES);
    }

    expect(CONTAINER_CAPABILITIES).not.toContain("CAP_SYS_ADMIN");
    expect(CONTAINER_CAPABILITIES).not.toContain("CAP_NET_ADMIN");
    expect(CONTAINER_CAPABILITIES).not.toContain("CAP_SYS_MODULE");
    expect(CONTAINER_CAPABILITIES).toContain("CAP_NET_RAW");
    expect(noNewPrivileges).toBe(true);
  });

  it("denies host-wide system calls", () => {
    const { seccomp } = config().linux;

    expect(seccomp.defaultAction).toBe("SCMP_ACT_ALLOW");
    expect(seccomp.syscalls[0]!.action).toBe("SCMP_ACT_ERRNO");
    expect(seccomp.syscalls[0]!.names).toEqual(DENIED_SYSCALLS);
    expect(DENIED_SYSCALLS).toEqual(expect.arrayContaining(["kexec_load", "init_module", "bpf"]));
  });

  it("roots on the overlay with a read-only resolv.conf", () => {
    const built = config({ hostname: "web-1", init: ["/bin/sh", "-c", "echo hi"] });

    expect(built.root).toEqual({
      path: `/var/lib/tstack-agent/containers/${vmUuid}/rootfs`,
      readonly: false,
    });
    expect(built.hostname).toBe("web-1");
    expect(built.process.args).toEqual(["/bin/sh", "-c", "echo hi"]);
    expect(built.mounts.find((mount) => mount.destination === "/etc/resolv.conf")).toEqual(
      expect.objectContaining({
        type: "bind",
        source: `/var/lib/tstack-agent/containers/${vmUuid}/resolv.conf`,
      }),
    );
    expect(built.mounts.find((mount) => mount.destination === "/sys")?.options).toContain("ro");
  });

  it("uses defaults for hostname and init", () => {
    const built = config();

    expect(built.hostname).toBe("ct-01234567");
    expect(built.process.args).toEqual(["/sbin/init"]);
  });
});

describe("container spec", () => {
  it("names the veth like a tap", () => {
    expect(resolveContainerSpec(input()).nics[0]!.tapName).toBe("vnic01234567.0");
  });

  it.each([
    ["hypervisorType", { hypervisorType: "KVM" as "Container" }],
    ["memoryMiB", { memoryMiB: 1 }],
    ["rootfs.imageUuid", { rootfs: { imageUuid: "../x", tarPath: "/a.tar" } }],
    ["rootfs.tarPath", { rootfs: { imageUuid: "f".repeat(32), tarPath: "rel.tar" } }],
    ["hostname", { hostname: "bad host" }],
    ["dns[0]", { dns: ["1.2.3"] }],
    ["init", { init: ["sbin/init"] }],
    ["nics[0].mac", { nics: [{ mac: "XX", bridgeName: "br0" }] }],
    ["nics[0].bridgeName", { nics: [{ mac: "52:54:00:00:00:01", bridgeName: "a/b" }] }],
    [
      "nics[0].ipv4.address",
      { nics: [{ mac: "52:54:00:00:00:01", bridgeName: "br0", ipv4: { address: "10.0.0.5" } }] },
    ],
    [
      "nics[0].ipv4.gateway",
      {
        nics: [
          {
            mac: "52:54:00:00:00:01",
            bridgeName: "br0",
            ipv4: { address: "10.0.0.5/24", gateway: "x" },
          },
        ],
      },
    ],
  ])("rejects an invalid %s", (field, overrides) => {
    expect(() => resolveContainerSpec(input(overrides as Partial<ContainerSpec>))).toThrow(
      ValidationError,
    );
    expect(() => resolveContainerSpec(input(overrides as Partial<ContainerSpec>))).toThrow(
      field.split(".")[0]!,
    );
  });
});
