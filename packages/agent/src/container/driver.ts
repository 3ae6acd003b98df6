import { existsSync } from "node:fs";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import type { HypervisorDriver, HypervisorStopOptions } from "../hypervisor.js";
import { KeyedQueue } from "../keyed-queue.js";
import type { MonitoredContainer } from "../monitoring/collector.js";
import { Reverter } from "../reverter.js";
import { assertInteger, assertUuid, ValidationError } from "../validate.js";
import { readPidFile } from "../vm/process.js";
import { ImageCache } from "./image-cache.js";
import { createContainerNetwork, deleteContainerNetwork, netnsPath } from "./netns.js";
import { buildOciConfig } from "./oci-config.js";
import { mountOverlay, unmountOverlay } from "./overlay.js";
import { type ContainerPaths, containerPaths } from "./paths.js";
import { isSameProcessAlive, processStartTime } from "./process.js";
import { Runc } from "./runc.js";
import { type ResolvedContainerSpec, resolveContainerSpec } from "./spec.js";
import type { ContainerSpec, VmInfo, VmReport } from "./types.js";

type ContainerState = VmInfo["state"];

/** Settings of a ContainerDriver. */
export interface ContainerDriverOptions {
  /** Agent data directory; run directories live in `<dataDir>/containers/<uuid>/`. */
  dataDir: string;
  logger: Logger;
  /** Receives container state changes that the agent did not cause. */
  onReport: (report: VmReport) => void;
  /**
   * Prefix of the runc container id, network namespace and cgroup of each container, followed
   * by the VM UUID; `tstack-ct-` by default.
   */
  namePrefix?: string;
  /** Folder of unpacked images; `<dataDir>/container-images` by default. */
  imageCacheDir?: string;
  /** Milliseconds between checks that each container's init still runs; 1000 by default. */
  watchIntervalMs?: number;
}

/** A container the agent started or re-adopted, or whose last run it remembers. */
export interface ContainerEntry {
  vmUuid: string;
  paths: ContainerPaths;
  spec: ResolvedContainerSpec;
  state: ContainerState;
  pid?: number;
  /** Start time of the init process, so a reused pid is not taken for it. */
  pidStartTime?: string;
  /** Set while the agent itself ends the container, so the exit is not reported. */
  expectExit: boolean;
}

const DEFAULT_PREFIX = "tstack-ct-";
const PREFIX = /^[a-z][a-z0-9-]{0,11}$/;
const DEFAULT_STOP_TIMEOUT_MS = 60_000;
const MAX_CONSOLE_BYTES = 1024 * 1024;

/**
 * Runs system containers with runc, one OCI bundle per container, behind the same operations as
 * the QEMU driver. Operations on one container run one at a time.
 */
export class ContainerDriver implements HypervisorDriver {
  readonly hypervisorType = "Container";
  readonly runc: Runc;
  readonly images: ImageCache;
  readonly #options: ContainerDriverOptions;
  readonly #prefix: string;
  readonly #log: Logger;
  readonly #entries = new Map<string, ContainerEntry>();
  readonly #queue = new KeyedQueue();
  readonly #watcher: NodeJS.Timeout;

  constructor(options: ContainerDriverOptions) {
    this.#options = options;
    this.#prefix = options.namePrefix ?? DEFAULT_PREFIX;

    if (!PREFIX.test(this.#prefix)) {
      throw new ValidationError(
        `invalid container name prefix ${JSON.stringify(this.#prefix)}: expected 1-12 of a-z 0-9 -, starting with a letter`,
      );
    }

    this.#log = options.logger.child({ component: "containers" });
    this.runc = new Runc(join(options.dataDir, "runc"));
    this.images = new ImageCache(
      options.imageCacheDir ?? join(options.dataDir, "container-images"),
    );
    this.#watcher = setInterval(() => this.#checkInits(), options.watchIntervalMs ?? 1000);
    this.#watcher.unref();
  }

  /** runc id of a container; also the name of its network namespace and cgroup. */
  containerId(vmUuid: string) {
    return `${this.#prefix}${vmUuid}`;
  }

  /** Starts a container; starting one that already runs returns its state unchanged. */
  async start(input: unknown): Promise<VmInfo> {
    const spec = resolveContainerSpec(input as ContainerSpec);
    return this.serialize(spec.vmUuid, () => this.#start(spec));
  }

  /** Sends SIGTERM to init, then SIGKILL after the timeout; an unknown container counts as stopped. */
  async stop(vmUuid: string, options: HypervisorStopOptions = {}): Promise<VmInfo> {
    assertUuid(vmUuid, "vmUuid");
    return this.serialize(vmUuid, () => this.#stop(vmUuid, options));
  }

  /** Kills the container and starts it again from the same spec and upper layer. */
  async reboot(vmUuid: string): Promise<VmInfo> {
    assertUuid(vmUuid, "vmUuid");

    return this.serialize(vmUuid, async () => {
      const entry = this.#running(vmUuid);
      await this.#endRun(entry, "Stopped", "rebooting");
      return this.#start(entry.spec);
    });
  }

  /** Freezes every process of the container with the cgroup freezer. */
  pause(vmUuid: string): Promise<VmInfo> {
    return this.#freezer(vmUuid, "pause");
  }

  /** Thaws a paused container. */
  resume(vmUuid: string): Promise<VmInfo> {
    return this.#freezer(vmUuid, "resume");
  }

  /** Kills the container and removes its run directory, upper layer included. */
  async destroy(vmUuid: string): Promise<void> {
    assertUuid(vmUuid, "vmUuid");

    return this.serialize(vmUuid, async () => {
      const paths = containerPaths(this.#options.dataDir, vmUuid);
      const entry = this.#entries.get(vmUuid);
      const spec = entry?.spec ?? (await readContainerSpec(paths));

      if (entry) {
        entry.expectExit = true;
      }

      await this.runc.deleteForce(this.containerId(vmUuid));
      await unmountOverlay(paths.rootfs);

      if (spec) {
        await deleteContainerNetwork(spec, this.containerId(vmUuid));
      }

      await rm(paths.dir, { recursive: true, force: true });
      this.#entries.delete(vmUuid);
      this.#log.info({ vmUuid }, "container destroyed");
    });
  }

  /** Checks whether a VM UUID is a container of this host, tracked or only left on disk. */
  owns(vmUuid: string) {
    return (
      this.#entries.has(vmUuid) || existsSync(containerPaths(this.#options.dataDir, vmUuid).dir)
    );
  }

  get(vmUuid: string): VmInfo | undefined {
    const entry = this.#entries.get(vmUuid);
    return entry && toInfo(entry);
  }

  list(): VmInfo[] {
    return [...this.#entries.values()].map(toInfo);
  }

  /** Lists the containers whose init runs, paused ones included, for the metrics collector. */
  runningContainers(): MonitoredContainer[] {
    return [...this.#entries.values()].flatMap((entry) =>
      entry.pid === undefined
        ? []
        : [
            {
              vmUuid: entry.vmUuid,
              pid: entry.pid,
              cpuNum: entry.spec.cpuNum,
              tapNames: entry.spec.nics.map((nic) => nic.tapName),
            },
          ],
    );
  }

  /** Checks every init once, so a container that ended since the last check shows its new state. */
  async refreshStates(): Promise<VmInfo[]> {
    this.#checkInits();
    return this.list();
  }

  /** Returns up to `bytes` bytes (at most 1 MiB) from the end of the init's stdout and stderr. */
  async consoleTail(vmUuid: string, bytes: number): Promise<string> {
    assertUuid(vmUuid, "vmUuid");
    assertInteger(bytes, "bytes", 1, MAX_CONSOLE_BYTES);

    const path = containerPaths(this.#options.dataDir, vmUuid).consoleLog;
    const text = await readFile(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") {
        throw new ValidationError(`container ${vmUuid} has no console log on this host`);
      }

      throw error;
    });

    return text.subarray(Math.max(0, text.length - bytes)).toString("utf8");
  }

  /** Registers a container found by re-adoption; used by `adoptContainers`. */
  adopt(entry: ContainerEntry) {
    this.#entries.set(entry.vmUuid, entry);
  }

  /** Stops watching; containers keep running for the next agent. */
  close() {
    clearInterval(this.#watcher);

    for (const entry of this.#entries.values()) {
      entry.expectExit = true;
    }
  }

  /** Runs `work` after every earlier operation on the same container has finished. */
  serialize<T>(vmUuid: string, work: () => Promise<T>): Promise<T> {
    return this.#queue.run(vmUuid, work);
  }

  async #start(spec: ResolvedContainerSpec): Promise<VmInfo> {
    const existing = this.#entries.get(spec.vmUuid);

    if (existing?.pid !== undefined && isSameProcessAlive(existing.pid, existing.pidStartTime)) {
      return toInfo(existing);
    }

    const id = this.containerId(spec.vmUuid);
    const paths = containerPaths(this.#options.dataDir, spec.vmUuid);
    const log = this.#log.child({ vmUuid: spec.vmUuid });
    const reverter = new Reverter();

    try {
      const lower = await this.images.rootfs(spec.rootfs.imageUuid, spec.rootfs.tarPath);
      await this.#clearStaleRun(id, paths);
      await prepareBundle(spec, paths, reverter);
      await writeFile(
        paths.configFile,
        JSON.stringify(buildOciConfig(spec, paths, this.#hostNames(id)), null, 2),
        { mode: 0o600 },
      );

      const layers = writableLayers(spec, paths);
      await mountOverlay(lower, layers.upper, layers.work, paths.rootfs);
      reverter.add(`overlay ${paths.rootfs}`, () => unmountOverlay(paths.rootfs));
      await createContainerNetwork(spec, id, reverter);

      // runc removes its own state if `run` fails, but not if it is killed on timeout.
      reverter.add(`runc container ${id}`, () => this.runc.deleteForce(id));
      await this.runc.runDetached(id, paths.dir, paths.pidFile, paths.consoleLog, paths.runcLog);

      const entry = await this.#entryOfStarted(spec, paths);
      this.#entries.set(spec.vmUuid, entry);
      reverter.success();
      log.info({ pid: entry.pid, id }, "container started");
      return toInfo(entry);
    } catch (error) {
      for (const undoError of await reverter.revert()) {
        log.error({ err: undoError }, "failed to roll back a container start");
      }

      log.error({ err: error }, "failed to start container");
      throw error;
    }
  }

  #hostNames(id: string) {
    return { containerId: id, netnsPath: netnsPath(id), cgroupsPath: `/${id}` };
  }

  /** Removes what a run that ended without the agent left behind: runc state and the overlay. */
  async #clearStaleRun(id: string, paths: ContainerPaths) {
    const state = await this.runc.state(id);

    if (state && state.status !== "stopped") {
      throw new ValidationError(
        `runc container ${id} is ${state.status} but not tracked: restart the agent to re-adopt it, or destroy the VM`,
      );
    }

    if (state) {
      await this.runc.deleteForce(id);
    }

    await unmountOverlay(paths.rootfs);
  }

  async #entryOfStarted(spec: ResolvedContainerSpec, paths: ContainerPaths) {
    const pid = await readPidFile(paths.pidFile);

    if (pid === undefined) {
      throw new Error(`runc started container ${spec.vmUuid} but wrote no pid to ${paths.pidFile}`);
    }

    const entry: ContainerEntry = {
      vmUuid: spec.vmUuid,
      paths,
      spec,
      state: "Running",
      pid,
      pidStartTime: processStartTime(pid),
      expectExit: false,
    };
    return entry;
  }

  async #stop(vmUuid: string, options: HypervisorStopOptions): Promise<VmInfo> {
    const entry = this.#entries.get(vmUuid);

    if (!entry) {
      return { vmUuid, state: "Stopped" };
    }

    if (entry.pid === undefined) {
      return toInfo(entry);
    }

    entry.expectExit = true;

    // A frozen init cannot handle SIGTERM, so a paused container is killed at once.
    if (!options.force && entry.state !== "Paused") {
      const timeoutMs = options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;

      if (!(await this.#terminate(entry, timeoutMs))) {
        this.#log.warn({ vmUuid, timeoutMs }, "container init ignored SIGTERM; killing it");
      }
    }

    await this.#endRun(entry, "Stopped", "stopped by the management node");
    this.#log.info({ vmUuid }, "container stopped");
    return toInfo(entry);
  }

  /** Sends SIGTERM to init and waits for it to exit; false on timeout. */
  async #terminate(entry: ContainerEntry, timeoutMs: number) {
    await this.runc.kill(this.containerId(entry.vmUuid), "TERM").catch((error: Error) => {
      this.#log.warn({ vmUuid: entry.vmUuid, err: error }, "failed to send SIGTERM to init");
    });

    const deadline = Date.now() + timeoutMs;

    while (Date.now() < deadline) {
      if (!isSameProcessAlive(entry.pid!, entry.pidStartTime)) {
        return true;
      }

      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    return false;
  }

  async #freezer(vmUuid: string, action: "pause" | "resume"): Promise<VmInfo> {
    assertUuid(vmUuid, "vmUuid");

    return this.serialize(vmUuid, async () => {
      const entry = this.#running(vmUuid);
      await this.runc[action](this.containerId(vmUuid));
      entry.state = action === "pause" ? "Paused" : "Running";
      this.#log.info({ vmUuid, action }, "container command done");
      return toInfo(entry);
    });
  }

  #running(vmUuid: string) {
    const entry = this.#entries.get(vmUuid);

    if (!entry || entry.pid === undefined) {
      throw new ValidationError(`container ${vmUuid} is not running on this host`);
    }

    return entry;
  }

  /** Kills what is left of the container, removes its mounts and network and records the state. */
  async #endRun(entry: ContainerEntry, state: ContainerState, reason: string) {
    entry.expectExit = true;
    await this.runc.deleteForce(this.containerId(entry.vmUuid));
    await unmountOverlay(entry.paths.rootfs);
    await deleteContainerNetwork(entry.spec, this.containerId(entry.vmUuid));
    entry.pid = undefined;
    entry.pidStartTime = undefined;
    entry.state = state;
    await writeFile(entry.paths.stateFile, JSON.stringify({ state, reason }), { mode: 0o600 });
  }

  /** Finds containers whose init exited without the agent asking, and reports them. */
  #checkInits() {
    for (const entry of this.#entries.values()) {
      if (entry.pid === undefined || entry.expectExit) {
        continue;
      }

      // NOTE: the init is not a child of the agent, so its exit status is unknown and a crash
      // is reported as Stopped like a clean exit.
      if (!isSameProcessAlive(entry.pid, entry.pidStartTime)) {
        this.#reportEnd(entry, "Stopped", "container init exited");
      }
    }
  }

  /** Reacts to an end the agent did not cause: cleans up, then reports the new state. */
  #reportEnd(entry: ContainerEntry, state: ContainerState, reason: string) {
    entry.expectExit = true;
    const log = this.#log.child({ vmUuid: entry.vmUuid });
    log.info({ state, reason }, "container state changed outside the agent");

    // The report goes out even when the cleanup fails, because the init is gone either way.
    void this.serialize(entry.vmUuid, async () => {
      try {
        await this.#endRun(entry, state, reason);
      } catch (error) {
        entry.state = state;
        log.error({ err: error }, "failed to clean up after the container ended");
      }

      this.#options.onReport({ vmUuid: entry.vmUuid, state, reason });
    });
  }
}

/**
 * Makes the bundle directory. The upper layer survives stops, like a VM's root disk; only
 * a first start removes the whole directory again on failure.
 */
async function prepareBundle(
  spec: ResolvedContainerSpec,
  paths: ContainerPaths,
  reverter: Reverter,
) {
  const { upper, work } = writableLayers(spec, paths);
  const firstStart = !(await stat(paths.dir).catch(() => undefined));

  await mkdir(paths.dir, { recursive: true, mode: 0o700 });

  if (firstStart) {
    reverter.add(`run directory ${paths.dir}`, () =>
      rm(paths.dir, { recursive: true, force: true }),
    );
  }

  // The work directory must be empty and on the same file system as the upper one.
  await rm(work, { recursive: true, force: true });
  await mkdir(upper, { recursive: true, mode: 0o755 });
  await mkdir(work, { mode: 0o700 });
  await mkdir(paths.rootfs, { recursive: true, mode: 0o755 });
  await rm(paths.stateFile, { force: true });
  await writeFile(paths.specFile, JSON.stringify(spec, null, 2), { mode: 0o600 });

  const resolv = spec.dns.map((server) => `nameserver ${server}\n`).join("");
  await writeFile(paths.resolvConf, resolv, { mode: 0o644 });
}

/** Returns the overlay's upper and work directories: the root volume's, or the run directory's. */
function writableLayers(spec: ResolvedContainerSpec, paths: ContainerPaths) {
  const upperDir = spec.rootfs.upperDir;
  return upperDir
    ? { upper: upperDir, work: join(dirname(upperDir), "work") }
    : { upper: paths.upper, work: paths.work };
}

/** Reads the spec a container was started with from its run directory. */
export async function readContainerSpec(
  paths: ContainerPaths,
): Promise<ResolvedContainerSpec | undefined> {
  try {
    return resolveContainerSpec(JSON.parse(await readFile(paths.specFile, "utf8")));
  } catch {
    return undefined;
  }
}

function toInfo(entry: ContainerEntry): VmInfo {
  const info: VmInfo = { vmUuid: entry.vmUuid, state: entry.state };

  if (entry.pid !== undefined) {
    info.pid = entry.pid;
  }

  return info;
}
