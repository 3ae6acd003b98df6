import { readFile, stat } from "node:fs/promises";
import type { QmpClient, QmpEvent } from "../qmp/index.js";
import type { Reverter } from "../reverter.js";
import { ValidationError } from "../validate.js";
import type { VmEntry } from "./driver.js";
import type { VmPaths } from "./paths.js";
import { isQemuOf, waitForExit } from "./process.js";
import { type ResolvedVmSpec, resolveVmSpec } from "./spec.js";
import { createTap, deleteTap, tapExists } from "./tap.js";
import type { VmInfo, VmSpec, VmState } from "./types.js";

const QUIT_TIMEOUT_MS = 5_000;

/** Maps a QMP `query-status` status to a VM state. */
export function stateOfStatus(status: string): VmState {
  if (status === "running") {
    return "Running";
  }

  if (status === "shutdown") {
    return "Stopped";
  }

  if (status === "guest-panicked" || status === "internal-error" || status === "io-error") {
    return "Crashed";
  }

  return "Paused";
}

/** Reads the spec a VM was started with from its run directory. */
export async function readSpec(paths: VmPaths): Promise<ResolvedVmSpec | undefined> {
  try {
    return resolveVmSpec(
      JSON.parse(await readFile(paths.specFile, "utf8")) as VmSpec,
    ) as ResolvedVmSpec;
  } catch {
    return undefined;
  }
}

export function toInfo(entry: VmEntry): VmInfo {
  const info: VmInfo = { vmUuid: entry.vmUuid, state: entry.state };

  if (entry.pid !== undefined) {
    info.pid = entry.pid;
  }

  if (entry.vncPort !== undefined) {
    info.vncPort = entry.vncPort;
  }

  return info;
}

export async function checkDisks(spec: ResolvedVmSpec) {
  for (const disk of spec.disks) {
    const info = await stat(disk.path).catch(() => undefined);

    if (!info?.isFile()) {
      throw new ValidationError(`disk image ${disk.path} of VM ${spec.vmUuid} not found`);
    }
  }
}

export async function createTaps(spec: ResolvedVmSpec, reverter: Reverter) {
  for (const nic of spec.nics) {
    // Tap names come from NIC uuids, so an existing one was left by this VM's last run: a QEMU
    // killed a moment ago can still hold it open. It is removed before the new run uses the name.
    if (await tapExists(nic.tapName)) {
      await deleteTap(nic.tapName);
    }

    if (await tapExists(nic.tapName)) {
      throw new ValidationError(
        `tap ${nic.tapName} of VM ${spec.vmUuid} still exists after its last run ended: a process holds it open; find it with 'ip link show ${nic.tapName}', end it, then start the VM again`,
      );
    }

    await createTap(nic.tapName, nic.bridgeName);
    reverter.add(`tap ${nic.tapName}`, () => deleteTap(nic.tapName));
  }
}

export async function deleteTaps(spec: ResolvedVmSpec) {
  for (const nic of spec.nics) {
    await deleteTap(nic.tapName);
  }
}

export async function configureAndRun(entry: VmEntry, qmp: QmpClient, spec: ResolvedVmSpec) {
  if (spec.vncPassword !== undefined) {
    await qmp.execute("set_password", { protocol: "vnc", password: spec.vncPassword });
  }

  const vnc = await qmp.execute<{ service?: string }>("query-vnc");
  const port = Number(vnc.service);

  if (Number.isInteger(port) && port > 0) {
    entry.vncPort = port;
  }

  await qmp.execute("cont");
}

/** Presses the ACPI power button and waits for the guest's SHUTDOWN; false on timeout. */
export async function powerDown(qmp: QmpClient, timeoutMs: number) {
  let onEvent: ((event: QmpEvent) => void) | undefined;
  let onClose: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;

  const done = new Promise<boolean>((resolve) => {
    onEvent = (event) => event.event === "SHUTDOWN" && resolve(true);
    onClose = () => resolve(true);
    timer = setTimeout(() => resolve(false), timeoutMs);
    qmp.on("event", onEvent);
    qmp.on("close", onClose);
  });

  try {
    await qmp.execute("system_powerdown");
    return await done;
  } finally {
    clearTimeout(timer);
    qmp.off("event", onEvent!);
    qmp.off("close", onClose!);
  }
}

/** Ends a VM's QEMU with QMP `quit`, then SIGKILL if it is still there after 5 s. */
export async function killQemu(pid: number, vmUuid: string, qmp?: QmpClient) {
  if (qmp && !qmp.closed) {
    await qmp.execute("quit", undefined, { timeoutMs: QUIT_TIMEOUT_MS }).catch(() => undefined);
  }

  if (await waitForExit(pid, QUIT_TIMEOUT_MS)) {
    return;
  }

  // The pid is checked again so a reused pid of another process is never killed.
  if (await isQemuOf(pid, vmUuid)) {
    process.kill(pid, "SIGKILL");
    await waitForExit(pid, QUIT_TIMEOUT_MS);
  }
}
