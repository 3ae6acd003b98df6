import { readFile } from "node:fs/promises";
import { join, relative } from "node:path";

/**
 * Reads a container's CPU time and memory from its cgroups. cgroup v1 (cpuacct and memory
 * hierarchies) is used when the host mounts those controllers; otherwise the unified cgroup v2
 * files are read. Paths come from `/proc/<pid>/cgroup` of the container's init and the agent's
 * own `/proc/self/mountinfo`, so they hold whatever cgroupsPath runc was given.
 */

/** A mounted cgroup hierarchy: the cgroup path it shows at `mountPoint`. */
export interface CgroupMount {
  /** Path of the mounted cgroup inside its hierarchy, usually `/`. */
  root: string;
  mountPoint: string;
}

/** cgroup v1 mounts by controller name, and the cgroup v2 mount if there is one. */
export interface CgroupMounts {
  v1: Map<string, CgroupMount>;
  v2?: CgroupMount;
}

/** A process's cgroup paths: v1 by controller, and its v2 path (the `0::` line). */
export interface ProcessCgroups {
  v1: Map<string, string>;
  v2?: string;
}

/** Usage of one cgroup as the monitor reports it. */
export interface CgroupUsage {
  /** CPU time of every task in the cgroup, user plus system, in seconds. */
  cpuSeconds: number;
  /** Memory in use minus inactive page cache, the working set. */
  memoryBytes: number;
}

/** Parses the cgroup and cgroup2 lines of a mountinfo file. */
export function parseCgroupMounts(mountinfo: string): CgroupMounts {
  const mounts: CgroupMounts = { v1: new Map() };

  for (const line of mountinfo.split("\n")) {
    // Optional fields end with a lone `-`; the filesystem type and super options follow it.
    const [before, after] = line.split(" - ");

    if (!before || !after) {
      continue;
    }

    const fields = before.split(" ");
    const [fsType, , superOptions] = after.split(" ");
    const mount = {
      root: unescapeMountPath(fields[3]!),
      mountPoint: unescapeMountPath(fields[4]!),
    };

    if (fsType === "cgroup2") {
      mounts.v2 ??= mount;
    } else if (fsType === "cgroup" && superOptions) {
      for (const option of superOptions.split(",")) {
        if (!mounts.v1.has(option)) {
          mounts.v1.set(option, mount);
        }
      }
    }
  }

  return mounts;
}

/** Parses `/proc/<pid>/cgroup`: `id:controllers:path` per line, controllers empty for v2. */
export function parseProcessCgroups(text: string): ProcessCgroups {
  const cgroups: ProcessCgroups = { v1: new Map() };

  for (const line of text.split("\n")) {
    const first = line.indexOf(":");
    const second = line.indexOf(":", first + 1);

    if (first < 0 || second < 0) {
      continue;
    }

    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);

    if (controllers === "") {
      cgroups.v2 = path;
      continue;
    }

    for (const controller of controllers.split(",")) {
      cgroups.v1.set(controller, path);
    }
  }

  return cgroups;
}

/**
 * Returns the directory of a cgroup under its mount, or undefined when the mount shows a part
 * of the hierarchy that does not contain it.
 */
export function cgroupDirectory(mount: CgroupMount, path: string): string | undefined {
  const inside = relative(mount.root, path);

  if (inside.startsWith("..")) {
    return undefined;
  }

  return join(mount.mountPoint, inside);
}

/** Parses a `key value` file such as memory.stat or cpu.stat into numbers by key. */
export function parseKeyValues(text: string): Map<string, number> {
  const values = new Map<string, number>();

  for (const line of text.split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    const number = Number(value);

    if (key && value !== undefined && Number.isFinite(number)) {
      values.set(key, number);
    }
  }

  return values;
}

/** Returns usage minus inactive file pages, as `docker stats` and cAdvisor report memory. */
export function workingSetBytes(usageBytes: number, inactiveFileBytes: number | undefined) {
  return Math.max(0, usageBytes - (inactiveFileBytes ?? 0));
}

/** Reads the CPU time and memory of the cgroups of a process, normally a container's init. */
export async function readCgroupUsage(pid: number, mounts: CgroupMounts): Promise<CgroupUsage> {
  const cgroups = parseProcessCgroups(await readFile(`/proc/${pid}/cgroup`, "utf8"));
  const cpuacct = v1Directory(mounts, cgroups, "cpuacct");
  const memory = v1Directory(mounts, cgroups, "memory");
  const unified =
    mounts.v2 && cgroups.v2 !== undefined ? cgroupDirectory(mounts.v2, cgroups.v2) : undefined;

  if ((!cpuacct || !memory) && !unified) {
    throw new Error(
      `no cpuacct and memory cgroup v1 hierarchy or cgroup v2 mount holds process ${pid}`,
    );
  }

  return {
    cpuSeconds: cpuacct ? await readCpuacctSeconds(cpuacct) : await readCpuStatSeconds(unified!),
    memoryBytes: memory ? await readV1Memory(memory) : await readV2Memory(unified!),
  };
}

function v1Directory(mounts: CgroupMounts, cgroups: ProcessCgroups, controller: string) {
  const mount = mounts.v1.get(controller);
  const path = cgroups.v1.get(controller);
  return mount && path !== undefined ? cgroupDirectory(mount, path) : undefined;
}

// cpuacct.usage is in nanoseconds.
async function readCpuacctSeconds(directory: string) {
  return Number((await readFile(join(directory, "cpuacct.usage"), "utf8")).trim()) / 1e9;
}

// cgroup v2 keeps cpu.stat in every cgroup, with or without the cpu controller.
async function readCpuStatSeconds(directory: string) {
  const usage = parseKeyValues(await readFile(join(directory, "cpu.stat"), "utf8")).get(
    "usage_usec",
  );

  if (usage === undefined) {
    throw new Error(`no usage_usec in ${join(directory, "cpu.stat")}`);
  }

  return usage / 1e6;
}

async function readV1Memory(directory: string) {
  const [usage, stat] = await Promise.all([
    readFile(join(directory, "memory.usage_in_bytes"), "utf8"),
    readFile(join(directory, "memory.stat"), "utf8"),
  ]);
  return workingSetBytes(Number(usage.trim()), parseKeyValues(stat).get("total_inactive_file"));
}

async function readV2Memory(directory: string) {
  const [current, stat] = await Promise.all([
    readFile(join(directory, "memory.current"), "utf8"),
    readFile(join(directory, "memory.stat"), "utf8"),
  ]);
  return workingSetBytes(Number(current.trim()), parseKeyValues(stat).get("inactive_file"));
}

// mountinfo escapes space, tab, newline and backslash as three octal digits.
function unescapeMountPath(path: string) {
  return path.replace(/\\([0-7]{3})/g, (_match, octal: string) =>
    String.fromCharCode(Number.parseInt(octal, 8)),
  );
}
