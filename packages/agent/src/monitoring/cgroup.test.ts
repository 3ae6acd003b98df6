import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import {
  cgroupDirectory,
  parseCgroupMounts,
  parseKeyValues,
  parseProcessCgroups,
  readCgroupUsage,
  workingSetBytes,
} from "./cgroup.js";

const HYBRID_MOUNTINFO = [
  "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
  "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct",
  "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
  "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd",
  "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
  "50 23 0:40 /kubepods /mnt/with\\040space rw - cgroup cgroup rw,pids",
  "",
].join("\n");

describe("parseCgroupMounts", () => {
  const mounts = parseCgroupMounts(HYBRID_MOUNTINFO);

  it("maps each v1 controller to its mount", () => {
    expect(mounts.v1.get("cpuacct")).toEqual({
      root: "/",
      mountPoint: "/sys/fs/cgroup/cpu,cpuacct",
    });
    expect(mounts.v1.get("cpu")?.mountPoint).toBe("/sys/fs/cgroup/cpu,cpuacct");
    expect(mounts.v1.get("memory")?.mountPoint).toBe("/sys/fs/cgroup/memory");
  });

  it("finds the cgroup2 mount", () => {
    expect(mounts.v2).toEqual({ root: "/", mountPoint: "/sys/fs/cgroup/unified" });
  });

  it("keeps the mount root and unescapes paths", () => {
    expect(mounts.v1.get("pids")).toEqual({ root: "/kubepods", mountPoint: "/mnt/with space" });
  });

  it("ignores other filesystems", () => {
    expect(mounts.v1.has("mode=755")).toBe(false);
  });
});

describe("parseProcessCgroups", () => {
  it("reads v1 controllers and the v2 path", () => {
    const cgroups = parseProcessCgroups(
      "4:memory:/tstack-ct-abc\n2:cpu,cpuacct:/tstack-ct-abc\n1:name=systemd:/\n0::/user.slice\n",
    );

    expect(cgroups.v1.get("memory")).toBe("/tstack-ct-abc");
    expect(cgroups.v1.get("cpuacct")).toBe("/tstack-ct-abc");
    expect(cgroups.v1.get("cpu")).toBe("/tstack-ct-abc");
    expect(cgroups.v2).toBe("/user.slice");
  });

  it("reads a pure v2 host", () => {
    const cgroups = parseProcessCgroups("0::/system.slice/ct.scope\n");

    expect(cgroups.v1.size).toBe(0);
    expect(cgroups.v2).toBe("/system.slice/ct.scope");
  });
});

describe("cgroupDirectory", () => {
  it("joins the path below the mount root", () => {
    const mount = { root: "/", mountPoint: "/sys/fs/cgroup/memory" };
    expect(cgroupDirectory(mount, "/tstack-ct-abc")).toBe("/sys/fs/cgroup/memory/tstack-ct-abc");
  });

  it("strips a mount root that is not /", () => {
    const mount = { root: "/kubepods", mountPoint: "/mnt/pids" };
    expect(cgroupDirectory(mount, "/kubepods/pod1")).toBe("/mnt/pids/pod1");
  });

  it("rejects a cgroup outside the mounted part", () => {
    const mount = { root: "/kubepods", mountPoint: "/mnt/pids" };
    expect(cgroupDirectory(mount, "/other")).toBeUndefined();
  });
});

describe("memory.stat", () => {
  it("parses key value lines", () => {
    const stat = parseKeyValues("cache 10\ntotal_inactive_file 4096\nbroken\n\n");

    expect(stat.get("cache")).toBe(10);
    expect(stat.get("total_inactive_file")).toBe(4096);
    expect(stat.has("broken")).toBe(false);
  });

  it("subtracts inactive file pages from usage", () => {
    expect(workingSetBytes(10_000, 4_000)).toBe(6_000);
    expect(workingSetBytes(10_000, undefined)).toBe(10_000);
    expect(workingSetBytes(1_000, 4_000)).toBe(0);
  });
});

describe("readCgroupUsage", () => {
  it("reads this process's own cgroups", async () => {
    const mounts = parseCgroupMounts(await readFile("/proc/self/mountinfo", "utf8"));
    const usage = await readCgroupUsage(process.pid, mounts);

    expect(usage.cpuSeconds).toBeGreaterThan(0);
    expect(usage.memoryBytes).toBeGreaterThan(0);
  });

  it("fails for a process that does not exist", async () => {
    const mounts = parseCgroupMounts(await readFile("/proc/self/mountinfo", "utf8"));
    await expect(readCgroupUsage(2 ** 30, mounts)).rejects.toThrow();
  });
});
