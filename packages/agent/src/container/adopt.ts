import { readdir, readFile, writeFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { ContainerDriver, ContainerEntry } from "./driver.js";
import { readContainerSpec } from "./driver.js";
import { deleteContainerNetwork } from "./netns.js";
import { unmountOverlay } from "./overlay.js";
import { containerPaths, containersDir } from "./paths.js";
import { processStartTime } from "./process.js";
import type { VmInfo, VmReport } from "./types.js";

const UUID = /^[0-9a-f]{32}$/;

/**
 * Re-adopts the containers of an earlier agent run: scans `<data-dir>/containers/`, queries
 * runc (same `--root`) for each one's state, and takes over those still running or paused. A
 * container that was running and whose init is gone is cleaned up and reported as stopped.
 */
export async function adoptContainers(
  driver: ContainerDriver,
  dataDir: string,
  logger: Logger,
  onReport: (report: VmReport) => void,
) {
  const names = await readdir(containersDir(dataDir)).catch(() => [] as string[]);

  for (const name of names) {
    if (!UUID.test(name)) {
      logger.warn({ name }, "skipped a container directory that is not named by a VM UUID");
      continue;
    }

    try {
      const entry = await adoptOne(driver, dataDir, name, onReport);

      if (entry) {
        driver.adopt(entry);
        logger.info({ vmUuid: name, state: entry.state, pid: entry.pid }, "container re-adopted");
      }
    } catch (error) {
      logger.error({ vmUuid: name, err: error }, "failed to re-adopt container");
    }
  }

  return driver.list();
}

async function adoptOne(
  driver: ContainerDriver,
  dataDir: string,
  vmUuid: string,
  onReport: (report: VmReport) => void,
): Promise<ContainerEntry | undefined> {
  const paths = containerPaths(dataDir, vmUuid);
  const spec = await readContainerSpec(paths);

  if (!spec) {
    return undefined;
  }

  const id = driver.containerId(vmUuid);
  const entry: ContainerEntry = { vmUuid, paths, spec, state: "Stopped", expectExit: false };
  const state = await driver.runc.state(id);

  if (state && (state.status === "running" || state.status === "paused") && state.pid > 0) {
    entry.pid = state.pid;
    entry.pidStartTime = processStartTime(state.pid);
    entry.state = state.status === "running" ? "Running" : "Paused";
    return entry;
  }

  const recorded = await readRecordedState(paths.stateFile);

  if (recorded) {
    entry.state = recorded;
    return entry;
  }

  // The init ended while no agent was watching, so nothing was cleaned up or reported.
  await driver.runc.deleteForce(id);
  await unmountOverlay(paths.rootfs);
  await deleteContainerNetwork(spec, id);

  const reason = "container init exited while the agent was not running";
  await writeFile(paths.stateFile, JSON.stringify({ state: "Stopped", reason }), { mode: 0o600 });
  onReport({ vmUuid, state: "Stopped", reason });
  return entry;
}

async function readRecordedState(path: string): Promise<VmInfo["state"] | undefined> {
  try {
    const recorded = JSON.parse(await readFile(path, "utf8")) as { state?: VmInfo["state"] };
    return recorded.state;
  } catch {
    return undefined;
  }
}
