import { describe, expect, it } from "vitest";
import { buildQemuArgs } from "./cmdline.js";
import { vmPaths } from "./paths.js";
import { resolveVmSpec } from "./spec.js";
import type { VmSpec } from "./types.js";

const vmUuid = "0123456789abcdef0123456789abcdef";

function spec(overrides: Partial<VmSpec> = {}): VmSpec {
  return {
    vmUuid,
    memoryMiB: 128,
    cpuNum: 2,
    disks: [{ path: "/images/root.qcow2" }, { path: "/images/data.raw", format: "raw" }],
    nics: [{ mac: "52:54:00:12:34:56", bridgeName: "br_l2_1" }],
    ...overrides,
  };
}

/** Returns the value after each occurrence of a flag. */
function values(args: string[], flag: string) {
  return args.flatMap((arg, index) => (arg === flag ? [args[index + 1]] : []));
}

describe("buildQemuArgs", () => {
  const paths = vmPaths("/var/lib/tstack-agent", vmUuid);
  const args = buildQemuArgs(resolveVmSpec(spec()), paths, "tcg");

  it("names the VM by UUID", () => {
    expect(values(args, "-name")).toEqual([`${vmUuid},debug-threads=on`]);
    expect(values(args, "-uuid")).toEqual(["01234567-89ab-cdef-0123-456789abcdef"]);
  });

  it("sets accelerator, memory and vCPUs", () => {
    expect(values(args, "-accel")).toEqual(["tcg"]);
    expect(values(args, "-m")).toEqual(["128"]);
    expect(values(args, "-smp")).toEqual(["2"]);
  });

  it("starts paused without defaults and keeps QEMU after guest power-off", () => {
    expect(args).toContain("-nodefaults");
    expect(args).toContain("-no-user-config");
    expect(args).toContain("-S");
    expect(args).toContain("-no-shutdown");
  });

  it("puts console, QMP and pid file in the run directory", () => {
    const dir = "/var/lib/tstack-agent/vms/0123456789abcdef0123456789abcdef";

    expect(values(args, "-serial")).toEqual([`file:${dir}/console.log`]);
    expect(values(args, "-qmp")).toEqual([`unix:${dir}/qmp.sock,server=on,wait=off`]);
    expect(values(args, "-pidfile")).toEqual([`${dir}/qemu.pid`]);
  });

  it("serves VNC on loopback with a password", () => {
    expect(values(args, "-vnc")).toEqual(["127.0.0.1:0,to=1000,password=on"]);
  });

  it("adds virtio disks in boot order", () => {
    expect(values(args, "-drive")).toEqual([
      "file=/images/root.qcow2,format=qcow2,if=none,id=disk0,discard=unmap",
      "file=/images/data.raw,format=raw,if=none,id=disk1,discard=unmap",
      "if=none,id=cdrom0-medium,media=cdrom,readonly=on",
    ]);
    expect(values(args, "-device")).toContain("virtio-blk-pci,drive=disk0,bootindex=0");
    expect(values(args, "-device")).toContain("virtio-blk-pci,drive=disk1,bootindex=1");
  });

  it("adds an empty IDE CD-ROM drive", () => {
    expect(values(args, "-device")).toContain(
      "ide-cd,drive=cdrom0-medium,id=cdrom0,bus=ide.1,unit=0",
    );
  });

  it("adds virtio-net NICs on derived tap names", () => {
    expect(values(args, "-netdev")).toEqual([
      "tap,id=net0,ifname=vnic01234567.0,script=no,downscript=no",
    ]);
    expect(values(args, "-device")).toContain("virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56");
  });
});

describe("resolveVmSpec", () => {
  it("keeps a given tap name", () => {
    const nics = [{ mac: "52:54:00:00:00:01", bridgeName: "br0", tapName: "tqa0" }];

    expect(resolveVmSpec(spec({ nics })).nics[0]?.tapName).toBe("tqa0");
  });

  it.each([
    ["an upper-case UUID", { vmUuid: vmUuid.toUpperCase() }, /invalid vmUuid/],
    ["a dashed UUID", { vmUuid: "01234567-89ab-cdef-0123-456789abcdef" }, /invalid vmUuid/],
    ["a path in the UUID", { vmUuid: "../../../../etc/passwd" }, /invalid vmUuid/],
    ["a comma in a disk path", { disks: [{ path: "/a,b.qcow2" }] }, /invalid disks\[0\].path/],
    ["a relative disk path", { disks: [{ path: "a.qcow2" }] }, /invalid disks\[0\].path/],
    ["no disks", { disks: [] }, /invalid disks/],
    ["zero memory", { memoryMiB: 0 }, /invalid memoryMiB/],
    ["fractional vCPUs", { cpuNum: 1.5 }, /invalid cpuNum/],
    [
      "a long bridge name",
      { nics: [{ mac: "52:54:00:00:00:01", bridgeName: "a-very-long-bridge" }] },
      /invalid nics\[0\].bridgeName/,
    ],
    [
      "a slash in a tap name",
      { nics: [{ mac: "52:54:00:00:00:01", bridgeName: "br0", tapName: "a/b" }] },
      /invalid nics\[0\].tapName/,
    ],
    [
      "an upper-case MAC",
      { nics: [{ mac: "52:54:00:AA:00:01", bridgeName: "br0" }] },
      /invalid nics\[0\].mac/,
    ],
  ])("rejects %s", (_case, overrides, message) => {
    expect(() => resolveVmSpec(spec(overrides as Partial<VmSpec>))).toThrow(message);
  });

  it("rejects two NICs on one tap", () => {
    const nic = { mac: "52:54:00:00:00:01", bridgeName: "br0", tapName: "tqa0" };

    expect(() => resolveVmSpec(spec({ nics: [nic, { ...nic }] }))).toThrow(/same tapName/);
  });
});

describe("vmPaths", () => {
  it("rejects a data directory too long for a unix socket", () => {
    expect(() => vmPaths(`/${"d".repeat(80)}`, vmUuid)).toThrow(/longer than 107 bytes/);
  });
});
