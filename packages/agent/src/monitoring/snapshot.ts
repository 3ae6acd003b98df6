import type { BlockCounters } from "./blockstats.js";
import type { CpuTimes, HostMemory, InterfaceCounters } from "./procfs.js";

/** Space of one primary storage's filesystem, in bytes. */
export interface StorageSpace {
  uuid: string;
  totalBytes: number;
  availableBytes: number;
}

/** A VM disk whose counters came from `query-blockstats`. */
export interface VolumeReading extends BlockCounters {
  volumeUuid: string;
}

/** A VM NIC and the counters of its tap device, as the host counts them. */
export interface NicReading {
  tapName: string;
  counters: InterfaceCounters;
}

/** Raw readings of one running VM or container. */
export interface VmReading {
  vmUuid: string;
  /** QEMU process id, or the container init's. A new one means the counters started again. */
  pid: number;
  cpuNum: number;
  /** CPU time of the QEMU process or the container's cgroup, user plus system, in seconds. */
  cpuSeconds: number;
  /** Resident memory of the QEMU process, or the working set of the container's cgroup. */
  residentBytes: number;
  volumes: VolumeReading[];
  nics: NicReading[];
}

/** Raw counters and gauges of one collection; rates come from two consecutive snapshots. */
export interface Snapshot {
  /** Milliseconds since the epoch. */
  time: number;
  cpu: CpuTimes;
  load: [number, number, number];
  memory: HostMemory;
  storages: StorageSpace[];
  interfaces: Map<string, InterfaceCounters>;
  vms: VmReading[];
}
