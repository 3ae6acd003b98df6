import { readFile } from "node:fs/promises";
import { cpus, hostname, release, totalmem } from "node:os";
import { RUNC_BINARY } from "../container/runc.js";
import { run } from "../exec.js";
import { QEMU_BINARY } from "../vm/process.js";
import type { Accelerator } from "../vm/types.js";
import { probeAccelerator } from "./kvm.js";

/** Static facts about a host, collected when the management node adds or reconnects it. */
export interface HostFacts {
  hostname: string;
  /** Distribution name from /etc/os-release, e.g. "Debian GNU/Linux 12 (bookworm)". */
  osName: string;
  osId: string;
  osVersion: string;
  kernelVersion: string;
  cpuModel: string;
  cpuNum: number;
  cpuFlags: string[];
  /** Total memory in bytes. */
  totalMemory: number;
  /** QEMU version such as "7.2.22". */
  qemuVersion: string;
  accel: Accelerator;
  /** Reason the accelerator was chosen. */
  accelReason: string;
  /** runc version such as "1.1.5+ds1", or "none" when runc is missing and containers cannot run. */
  runcVersion: string;
  /**
   * Whether containers run in a user namespace. Always false: runc 1.1 cannot map the ids of
   * the shared read-only image layer, so root in a container is root on the host.
   */
  containerUserNamespaces: boolean;
}

/** CPU and memory capacity of a host. */
export interface HostCapacity {
  cpuNum: number;
  /** Total memory in bytes. */
  totalMemory: number;
  /** Memory available to new processes in bytes (MemAvailable of /proc/meminfo). */
  availableMemory: number;
}

/** Collects the host facts, including a real KVM probe that takes up to 5 s. */
export async function collectFacts(): Promise<HostFacts> {
  const [osRelease, cpuFlags, qemuVersion, probe, runcVersion] = await Promise.all([
    readOsRelease(),
    readCpuFlags(),
    readQemuVersion(),
    probeAccelerator(),
    readRuncVersion(),
  ]);

  return {
    hostname: hostname(),
    osName: osRelease.PRETTY_NAME ?? "unknown",
    osId: osRelease.ID ?? "unknown",
    osVersion: osRelease.VERSION_ID ?? "unknown",
    kernelVersion: release(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    cpuNum: cpus().length,
    cpuFlags,
    totalMemory: totalmem(),
    qemuVersion,
    accel: probe.accel,
    accelReason: probe.reason,
    runcVersion,
    containerUserNamespaces: false,
  };
}

/** Reads the host's current capacity. */
export async function readCapacity(): Promise<HostCapacity> {
  const meminfo = await readFile("/proc/meminfo", "utf8");
  const available = /^MemAvailable:\s+(\d+) kB$/m.exec(meminfo);

  return {
    cpuNum: cpus().length,
    totalMemory: totalmem(),
    availableMemory: available ? Number(available[1]) * 1024 : 0,
  };
}

/** Reads the kernel's boot id, which changes on every host boot. */
export async function readBootId() {
  return (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
}

async function readOsRelease() {
  const text = await readFile("/etc/os-release", "utf8").catch(() => "");
  const fields: Record<string, string> = {};

  for (const line of text.split("\n")) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line);

    if (match) {
      fields[match[1]!] = match[2]!.replace(/^"(.*)"$/, "$1");
    }
  }

  return fields;
}

async function readCpuFlags() {
  const text = await readFile("/proc/cpuinfo", "utf8");
  const line = /^flags\s*:\s*(.*)$/m.exec(text);
  return line ? line[1]!.trim().split(/\s+/) : [];
}

async function readRuncVersion() {
  try {
    const result = await run(RUNC_BINARY, ["--version"]);
    return /runc version (\S+)/.exec(result.stdout)?.[1] ?? "unknown";
  } catch {
    return "none";
  }
}

async function readQemuVersion() {
  const result = await run(QEMU_BINARY, ["--version"]);
  const match = /version (\d+\.\d+\.\d+)/.exec(result.stdout);
  return match ? match[1]! : "unknown";
}
