import { readFile } from "node:fs/promises";
import { run } from "../exec.js";
import { filesystemCapacity } from "../storage/statfs.js";
import { diskIndex, parseBlockStats, volumeUuidOfPath } from "./blockstats.js";
import { type CgroupMounts, parseCgroupMounts, readCgroupUsage } from "./cgroup.js";
import {
  type InterfaceCounters,
  parseCpuTimes,
  parseLoadAverage,
  parseMeminfo,
  parseNetDev,
  parseProcessCpuTicks,
  parseResidentBytes,
} from "./procfs.js";
import type { Snapshot, StorageSpace, VmReading, VolumeReading } from "./snapshot.js";
import type { MonitoredPrimaryStorage } from "./types.js";

/** A running VM as the collector needs it. */
export interface MonitoredVm {
  vmUuid: string;
  pid: number;
  cpuNum: number;
  /** Disk image paths in drive order: drive `disk<i>` is `diskPaths[i]`. */
  diskPaths: string[];
  tapNames: string[];
}

/** Source of running VMs and their block counters; the QEMU driver in production. */
export interface VmSource {
  runningVms(): Promise<MonitoredVm[]>;
  /** Returns the raw reply of QMP `query-blockstats`. */
  queryBlockStats(vmUuid: string): Promise<unknown>;
}

/** A running container as the collector needs it: its init and the host ends of its veths. */
export interface MonitoredContainer {
  vmUuid: string;
  /** Process id of the container's init, whose cgroups are the container's. */
  pid: number;
  cpuNum: number;
  tapNames: string[];
}

/** Source of running containers; the container driver in production. */
export interface ContainerSource {
  runningContainers(): MonitoredContainer[];
}

/**
 * Reads one snapshot of host, VM and container counters from /proc, cgroups, statfs and QMP.
 * Containers become VM readings, so their samples have the same names and labels as a VM's.
 */
export class Collector {
  #ticksPerSecond: number | undefined;
  readonly #vms: VmSource;
  readonly #containers: ContainerSource | undefined;

  constructor(vms: VmSource, containers?: ContainerSource) {
    this.#vms = vms;
    this.#containers = containers;
  }

  async collect(storages: MonitoredPrimaryStorage[]): Promise<Snapshot> {
    this.#ticksPerSecond ??= await readTicksPerSecond();
    const time = Date.now();
    const [procStat, loadavg, meminfo, netDev] = await Promise.all([
      readFile("/proc/stat", "utf8"),
      readFile("/proc/loadavg", "utf8"),
      readFile("/proc/meminfo", "utf8"),
      readFile("/proc/net/dev", "utf8"),
    ]);
    const interfaces = parseNetDev(netDev);
    const vms = [...(await this.#readVms(interfaces)), ...(await this.#readContainers(interfaces))];

    // Loopback traffic is the host talking to itself, and each tap is reported per VM NIC.
    interfaces.delete("lo");

    for (const vm of vms) {
      for (const nic of vm.nics) {
        interfaces.delete(nic.tapName);
      }
    }

    return {
      time,
      cpu: parseCpuTimes(procStat),
      load: parseLoadAverage(loadavg),
      memory: parseMeminfo(meminfo),
      storages: await readStorages(storages),
      interfaces,
      vms,
    };
  }

  async #readVms(interfaces: Map<string, InterfaceCounters>): Promise<VmReading[]> {
    const running = await this.#vms.runningVms();
    const readings = await Promise.all(
      running.map((vm) => this.#readVm(vm, interfaces).catch(() => undefined)),
    );

    // A VM whose process ended between the listing and the reads is simply left out.
    return readings.filter((reading): reading is VmReading => reading !== undefined);
  }

  async #readContainers(interfaces: Map<string, InterfaceCounters>): Promise<VmReading[]> {
    const running = this.#containers?.runningContainers() ?? [];

    if (running.length === 0) {
      return [];
    }

    const mounts = parseCgroupMounts(await readFile("/proc/self/mountinfo", "utf8"));
    const readings = await Promise.all(
      running.map((container) =>
        readContainer(container, mounts, interfaces).catch(() => undefined),
      ),
    );

    // A container whose init ended between the listing and the reads is left out, like a VM.
    return readings.filter((reading): reading is VmReading => reading !== undefined);
  }

  async #readVm(vm: MonitoredVm, interfaces: Map<string, InterfaceCounters>): Promise<VmReading> {
    const [stat, status, blockStats] = await Promise.all([
      readFile(`/proc/${vm.pid}/stat`, "utf8"),
      readFile(`/proc/${vm.pid}/status`, "utf8"),
      this.#vms.queryBlockStats(vm.vmUuid).catch(() => []),
    ]);
    const volumes: VolumeReading[] = [];

    for (const counters of parseBlockStats(blockStats)) {
      const index = diskIndex(counters.device);
      const path = index === undefined ? undefined : vm.diskPaths[index];
      const volumeUuid = path && volumeUuidOfPath(path);

      if (volumeUuid) {
        volumes.push({ ...counters, volumeUuid });
      }
    }

    return {
      vmUuid: vm.vmUuid,
      pid: vm.pid,
      cpuNum: vm.cpuNum,
      cpuSeconds: parseProcessCpuTicks(stat) / this.#ticksPerSecond!,
      residentBytes: parseResidentBytes(status),
      volumes,
      nics: nicReadings(vm.tapNames, interfaces),
    };
  }
}

/**
 * Reads a container from its cgroups. It has no volume readings: its root volume is an overlay
 * directory, and cgroup v1 blkio does not charge buffered writeback to the writer's cgroup.
 */
async function readContainer(
  container: MonitoredContainer,
  mounts: CgroupMounts,
  interfaces: Map<string, InterfaceCounters>,
): Promise<VmReading> {
  const usage = await readCgroupUsage(container.pid, mounts);

  return {
    vmUuid: container.vmUuid,
    pid: container.pid,
    cpuNum: container.cpuNum,
    cpuSeconds: usage.cpuSeconds,
    residentBytes: usage.memoryBytes,
    volumes: [],
    nics: nicReadings(container.tapNames, interfaces),
  };
}

// The host end of a container's veth has the tap name, and counts traffic as a tap does.
function nicReadings(tapNames: string[], interfaces: Map<string, InterfaceCounters>) {
  return tapNames.flatMap((tapName) => {
    const counters = interfaces.get(tapName);
    return counters ? [{ tapName, counters }] : [];
  });
}

async function readStorages(storages: MonitoredPrimaryStorage[]): Promise<StorageSpace[]> {
  const spaces = await Promise.all(
    storages.map(async (storage) => {
      try {
        const capacity = await filesystemCapacity(storage.root);
        return {
          uuid: storage.uuid,
          totalBytes: capacity.totalCapacity,
          availableBytes: capacity.availableCapacity,
        };
      } catch {
        // A storage not mounted yet or already removed has no space to report.
        return undefined;
      }
    }),
  );

  return spaces.filter((space): space is StorageSpace => space !== undefined);
}

// Linux reports process times in USER_HZ ticks. The value is read with getconf, and 100 (the
// usual Linux value) is only the fallback when getconf fails.
async function readTicksPerSecond() {
  const result = await run("getconf", ["CLK_TCK"], { timeoutMs: 5_000 }).catch(() => undefined);
  const ticks = Number(result?.stdout.trim());
  return Number.isInteger(ticks) && ticks > 0 ? ticks : 100;
}
