import { readdir, readFile, writeFile } from "node:fs/promises";
import type { Logger } from "pino";
import { QmpClient } from "../qmp/index.js";
import type { QemuDriver, VmEntry } from "./driver.js";
import { readSpec, stateOfStatus } from "./lifecycle.js";
import { vmPaths, vmsDir } from "./paths.js";
import { isAlive, isQemuOf, readPidFile, waitForExit } from "./process.js";
import { deleteTap } from "./tap.js";
import type { VmReport, VmState } from "./types.js";

const UUID = /^[0-9a-f]{32}$/;

/** How long a QEMU whose QMP no longer responds may take to finish exiting. */
const EXIT_GRACE_MS = 10_000;

/**
 * Re-adopts the VMs of an earlier agent run: scans `<data-dir>/vms/`, reconnects QMP to every
 * QEMU that is still alive and runs this VM, and records the others as stopped or crashed.
 * A VM that was running and whose QEMU is gone is reported as crashed.
 */
export async function adoptVms(
  driver: QemuDriver,
  dataDir: string,
  logger: Logger,
  onReport: (report: VmReport) => void,
) {
  const names = await readdir(vmsDir(dataDir)).catch(() => [] as string[]);

  for (const name of names) {
    if (!UUID.test(name)) {
      logger.warn({ name }, "skipped a run directory that is not named by a VM UUID");
      continue;
    }

    try {
      const entry = await adoptOne(dataDir, name, onReport);

      if (entry) {
        driver.adopt(entry);
        logger.info({ vmUuid: name, state: entry.state, pid: entry.pid }, "VM re-adopted");
      }
    } catch (error) {
      logger.error({ vmUuid: name, err: error }, "failed to re-adopt VM");
    }
  }

  return driver.list();
}

async function adoptOne(
  dataDir: string,
  vmUuid: string,
  onReport: (report: VmReport) => void,
): Promise<VmEntry | undefined> {
  const paths = vmPaths(dataDir, vmUuid);
  const spec = await readSpec(paths);

  if (!spec) {
    return undefined;
  }

  const entry: VmEntry = { vmUuid, paths, spec, state: "Stopped", expectExit: false };
  const pid = await readPidFile(paths.pidFile);

  if (pid !== undefined && isAlive(pid) && (await isQemuOf(pid, vmUuid))) {
    try {
      const qmp = await QmpClient.connect(paths.qmpSocket);
      const status = await qmp.execute<{ status: string }>("query-status");
      const vnc = await qmp.execute<{ service?: string }>("query-vnc");

      entry.pid = pid;
      entry.qmp = qmp;
      entry.state = stateOfStatus(status.status);
      entry.vncPort = Number(vnc.service) || undefined;
      return entry;
    } catch (error) {
      // A QEMU that is still exiting has a process but no QMP any more. Once it is gone it is
      // handled as crashed below; a live QEMU whose QMP fails is an error for the caller.
      if (!(await waitForExit(pid, EXIT_GRACE_MS))) {
        throw error;
      }
    }
  }

  const recorded = await readRecordedState(paths.stateFile);

  if (recorded) {
    entry.state = recorded;
    return entry;
  }

  // QEMU ended while no agent was watching, so its taps were not removed and it was not reported.
  for (const nic of spec.nics) {
    await deleteTap(nic.tapName);
  }

  entry.state = "Crashed";
  const reason = "QEMU exited while the agent was not running";
  await writeFile(paths.stateFile, JSON.stringify({ state: "Crashed", reason }), { mode: 0o600 });
  onReport({ vmUuid, state: "Crashed", reason });
  return entry;
}

async function readRecordedState(path: string): Promise<VmState | undefined> {
  try {
    const recorded = JSON.parse(await readFile(path, "utf8")) as { state?: VmState };
    return recorded.state;
  } catch {
    return undefined;
  }
}
