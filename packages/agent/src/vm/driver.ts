import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { HypervisorDriver } from "../hypervisor.js";
import { KeyedQueue } from "../keyed-queue.js";
import type { QmpClient, QmpEvent } from "../qmp/index.js";
import { Reverter } from "../reverter.js";
import { assertInteger, assertUuid, ValidationError } from "../validate.js";
import { buildQemuArgs } from "./cmdline.js";
import {
  checkDisks,
  configureAndRun,
  createTaps,
  deleteTaps,
  killQemu,
  powerDown,
  readSpec,
  stateOfStatus,
  toInfo,
} from "./lifecycle.js";
import { type VmPaths, vmPaths } from "./paths.js";
import { isAlive, isQemuOf, readPidFile, spawnQemu } from "./process.js";
import { type ResolvedVmSpec, resolveVmSpec } from "./spec.js";
import type { Accelerator, VmInfo, VmReport, VmSpec, VmState } from "./types.js";

/** Settings of a QemuDriver. */
export interface QemuDriverOptions {
  /** Agent data directory; VM run directories live in `<dataDir>/vms/<uuid>/`. */
  dataDir: string;
  accel: Accelerator;
  logger: Logger;
  /** Receives VM state changes that the agent did not cause. */
  onReport: (report: VmReport) => void;
  /** Milliseconds QEMU may take until QMP accepts commands; 30 s by default. */
  startTimeoutMs?: number;
}

/** Options of a VM stop. */
export interface StopOptions {
  /** Milliseconds to wait for the guest to power off after the ACPI button; 60 s by default. */
  timeoutMs?: number;
  /** Skips the ACPI power button and ends QEMU at once. */
  force?: boolean;
}

/** A VM whose QEMU process the agent started or re-adopted, or whose last run it remembers. */
export interface VmEntry {
  vmUuid: string;
  paths: VmPaths;
  spec: ResolvedVmSpec;
  state: VmState;
  pid?: number;
  qmp?: QmpClient;
  vncPort?: number;
  /** Set while the agent itself ends QEMU, so the exit is not reported as a crash. */
  expectExit: boolean;
}

const DEFAULT_START_TIMEOUT_MS = 30_000;
const DEFAULT_STOP_TIMEOUT_MS = 60_000;
const MAX_CONSOLE_BYTES = 1024 * 1024;

/**
 * Drives one QEMU process per VM. Operations on one VM run one at a time, and so do the
 * reactions to QMP events of that VM.
 */
export class QemuDriver implements HypervisorDriver {
  readonly hypervisorType = "KVM";
  readonly #options: QemuDriverOptions;
  readonly #log: Logger;
  readonly #vms = new Map<string, VmEntry>();
  readonly #queue = new KeyedQueue();

  constructor(options: QemuDriverOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: "qemu" });
  }

  /** Starts a VM; starting a VM whose QEMU already runs returns its state unchanged. */
  async start(input: VmSpec): Promise<VmInfo> {
    const spec = resolveVmSpec(input);
    return this.serialize(spec.vmUuid, () => this.#start(spec));
  }

  /** Powers a VM off with the ACPI button, then ends QEMU; an unknown VM counts as stopped. */
  async stop(vmUuid: string, options: StopOptions = {}): Promise<VmInfo> {
    assertUuid(vmUuid, "vmUuid");
    return this.serialize(vmUuid, () => this.#stop(vmUuid, options));
  }

  /** Resets a running VM like a hardware reset button. */
  reboot(vmUuid: string): Promise<VmInfo> {
    return this.#command(vmUuid, "system_reset", "Running");
  }

  /** Pauses a running VM's vCPUs. */
  pause(vmUuid: string): Promise<VmInfo> {
    return this.#command(vmUuid, "stop", "Paused");
  }

  /** Resumes a paused VM. */
  resume(vmUuid: string): Promise<VmInfo> {
    return this.#command(vmUuid, "cont", "Running");
  }

  /**
   * Sends one QMP command to a running VM, for features built on top of the driver such as
   * screendumps or disk snapshots. State changes it causes are treated as caused by the guest.
   */
  async qmpExecute<T = unknown>(
    vmUuid: string,
    command: string,
    args?: Record<string, unknown>,
  ): Promise<T> {
    return this.withQmp(vmUuid, (qmp) => qmp.execute<T>(command, args));
  }

  /**
   * Runs `work` with a running VM's QMP client, after every earlier operation on that VM, for
   * multi-command features such as disk hotplug that wait for QMP events.
   */
  async withQmp<T>(vmUuid: string, work: (qmp: QmpClient) => Promise<T>): Promise<T> {
    assertUuid(vmUuid, "vmUuid");

    return this.serialize(vmUuid, async () => {
      const entry = this.#vms.get(vmUuid);

      if (!entry?.qmp) {
        throw new ValidationError(`VM ${vmUuid} is not running on this host`);
      }

      return work(entry.qmp);
    });
  }

  /** Kills QEMU and removes the VM's taps and run directory. Disk images are never touched. */
  async destroy(vmUuid: string): Promise<void> {
    assertUuid(vmUuid, "vmUuid");
    return this.serialize(vmUuid, () => this.#destroy(vmUuid));
  }

  /** Returns every VM the agent tracks, including stopped and crashed ones not yet destroyed. */
  list(): VmInfo[] {
    return [...this.#vms.values()].map(toInfo);
  }

  /** Returns one VM, or undefined when the agent does not know it. */
  get(vmUuid: string): VmInfo | undefined {
    const entry = this.#vms.get(vmUuid);
    return entry && toInfo(entry);
  }

  /** Asks each running QEMU for its status, so states changed by QEMU itself are current. */
  async refreshStates(): Promise<VmInfo[]> {
    const running = [...this.#vms.values()].filter((entry) => entry.qmp && !entry.expectExit);

    await Promise.all(running.map((entry) => this.#refreshState(entry)));
    return this.list();
  }

  /** Returns up to `bytes` bytes (at most 1 MiB) from the end of a VM's serial console log. */
  async consoleTail(vmUuid: string, bytes: number): Promise<string> {
    assertUuid(vmUuid, "vmUuid");
    assertInteger(bytes, "bytes", 1, MAX_CONSOLE_BYTES);

    const paths = vmPaths(this.#options.dataDir, vmUuid);
    const text = await readFile(paths.consoleLog).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") {
        throw new ValidationError(`VM ${vmUuid} has no console log on this host`);
      }

      throw error;
    });

    return text.subarray(Math.max(0, text.length - bytes)).toString("utf8");
  }

  /** Registers a VM found by re-adoption; used by `adoptVms`. */
  adopt(entry: VmEntry) {
    this.#vms.set(entry.vmUuid, entry);

    if (entry.qmp) {
      this.#watch(entry, entry.qmp);
    }

    // The guest powered off or panicked while no agent was watching; QEMU still waits for quit.
    if (entry.qmp && (entry.state === "Stopped" || entry.state === "Crashed")) {
      this.#reportEnd(entry, entry.state, "VM ended while the agent was not running");
    }
  }

  /** Closes the QMP connections; the QEMU processes keep running for the next agent. */
  close() {
    for (const entry of this.#vms.values()) {
      entry.expectExit = true;
      entry.qmp?.close();
    }
  }

  /** Runs `work` after every earlier operation on the same VM has finished. */
  serialize<T>(vmUuid: string, work: () => Promise<T>): Promise<T> {
    return this.#queue.run(vmUuid, work);
  }

  async #start(spec: ResolvedVmSpec): Promise<VmInfo> {
    const existing = this.#vms.get(spec.vmUuid);

    if (existing?.pid !== undefined && isAlive(existing.pid)) {
      return toInfo(existing);
    }

    const paths = vmPaths(this.#options.dataDir, spec.vmUuid);
    const log = this.#log.child({ vmUuid: spec.vmUuid });
    const reverter = new Reverter();

    try {
      await checkDisks(spec);
      await this.#prepareRunDir(paths, spec, reverter);
      await createTaps(spec, reverter);

      const args = buildQemuArgs(spec, paths, this.#options.accel);
      const timeoutMs = this.#options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
      const qemu = await spawnQemu(args, paths, timeoutMs);
      reverter.add(`QEMU process ${qemu.pid}`, async () => {
        process.kill(qemu.pid, "SIGKILL");
        await qemu.exited;
      });

      const entry: VmEntry = {
        vmUuid: spec.vmUuid,
        paths,
        spec,
        state: "Paused",
        expectExit: true,
      };
      entry.pid = qemu.pid;
      entry.qmp = qemu.qmp;
      reverter.add("QMP connection", () => qemu.qmp.close());

      await configureAndRun(entry, qemu.qmp, spec);
      entry.state = "Running";
      entry.expectExit = false;
      this.#vms.set(spec.vmUuid, entry);
      this.#watch(entry, qemu.qmp);
      reverter.success();
      log.info({ pid: qemu.pid, vncPort: entry.vncPort }, "VM started");
      return toInfo(entry);
    } catch (error) {
      for (const undoError of await reverter.revert()) {
        log.error({ err: undoError }, "failed to roll back a VM start");
      }

      log.error({ err: error }, "failed to start VM");
      throw error;
    }
  }

  async #prepareRunDir(paths: VmPaths, spec: ResolvedVmSpec, reverter: Reverter) {
    const pid = await readPidFile(paths.pidFile);

    // A QEMU the agent does not track, e.g. one whose re-adoption failed, still owns the directory.
    if (pid !== undefined && isAlive(pid) && (await isQemuOf(pid, spec.vmUuid))) {
      throw new ValidationError(
        `QEMU process ${pid} of VM ${spec.vmUuid} runs but is not tracked: restart the agent to re-adopt it, or destroy the VM`,
      );
    }

    // A leftover directory belongs to an earlier run of this VM whose QEMU is gone.
    await rm(paths.dir, { recursive: true, force: true });
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
    reverter.add(`run directory ${paths.dir}`, () =>
      rm(paths.dir, { recursive: true, force: true }),
    );
    await writeFile(paths.specFile, JSON.stringify(spec, null, 2), { mode: 0o600 });
  }

  async #stop(vmUuid: string, options: StopOptions): Promise<VmInfo> {
    const entry = this.#vms.get(vmUuid);

    if (!entry) {
      return { vmUuid, state: "Stopped" };
    }

    if (entry.pid === undefined) {
      return toInfo(entry);
    }

    entry.expectExit = true;

    // A paused guest cannot see the power button, so it is stopped the forced way.
    if (!options.force && entry.state !== "Paused" && entry.qmp) {
      const timeoutMs = options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
      const poweredOff = await powerDown(entry.qmp, timeoutMs);

      if (!poweredOff) {
        this.#log.warn({ vmUuid, timeoutMs }, "guest ignored the ACPI power button; ending QEMU");
      }
    }

    await this.#endRun(entry, "Stopped", "stopped by the management node");
    this.#log.info({ vmUuid }, "VM stopped");
    return toInfo(entry);
  }

  async #command(vmUuid: string, command: string, state: VmState): Promise<VmInfo> {
    assertUuid(vmUuid, "vmUuid");

    return this.serialize(vmUuid, async () => {
      const entry = this.#vms.get(vmUuid);

      if (!entry?.qmp || entry.pid === undefined) {
        throw new ValidationError(`VM ${vmUuid} is not running on this host`);
      }

      await entry.qmp.execute(command);
      entry.state = state;
      this.#log.info({ vmUuid, command }, "VM command done");
      return toInfo(entry);
    });
  }

  async #destroy(vmUuid: string) {
    const paths = vmPaths(this.#options.dataDir, vmUuid);
    const entry = this.#vms.get(vmUuid);
    const spec = entry?.spec ?? (await readSpec(paths));

    // Without an entry the pid file still finds a QEMU whose re-adoption failed.
    const pid = entry ? entry.pid : await readPidFile(paths.pidFile);

    if (entry) {
      entry.expectExit = true;
    }

    if (pid !== undefined && isAlive(pid) && (await isQemuOf(pid, vmUuid))) {
      await killQemu(pid, vmUuid, entry?.qmp);
    }

    entry?.qmp?.close();

    if (spec) {
      await deleteTaps(spec);
    }

    await rm(paths.dir, { recursive: true, force: true });
    this.#vms.delete(vmUuid);
    this.#log.info({ vmUuid }, "VM destroyed");
  }

  /** Ends QEMU, removes the taps and records the final state in the run directory. */
  async #endRun(entry: VmEntry, state: VmState, reason: string) {
    entry.expectExit = true;

    if (entry.pid !== undefined) {
      await killQemu(entry.pid, entry.vmUuid, entry.qmp);
    }

    entry.qmp?.close();
    entry.qmp = undefined;
    entry.pid = undefined;
    entry.vncPort = undefined;
    entry.state = state;
    await writeFile(entry.paths.stateFile, JSON.stringify({ state, reason }), { mode: 0o600 });
    await deleteTaps(entry.spec);
  }

  #watch(entry: VmEntry, qmp: QmpClient) {
    qmp.on("event", (event) => this.#onEvent(entry, event));
    qmp.on("close", () => this.#onClose(entry));
  }

  #onEvent(entry: VmEntry, event: QmpEvent) {
    // With `-action panic=shutdown`, a panic arrives as a guest SHUTDOWN, not as a power-off.
    if (event.event === "GUEST_PANICKED" || event.data?.reason === "guest-panic") {
      this.#reportEnd(entry, "Crashed", "guest kernel panicked");
      return;
    }

    if (event.event === "SHUTDOWN" && event.data?.guest === true) {
      const reason = `guest powered off (${String(event.data.reason ?? "guest-shutdown")})`;
      this.#reportEnd(entry, "Stopped", reason);
    }
  }

  #onClose(entry: VmEntry) {
    if (entry.expectExit) {
      return;
    }

    this.#reportEnd(entry, "Crashed", "QEMU exited unexpectedly");
  }

  /** Reacts to an end the agent did not cause: ends QEMU, then reports the new state. */
  #reportEnd(entry: VmEntry, state: VmState, reason: string) {
    if (entry.expectExit || this.#vms.get(entry.vmUuid) !== entry) {
      return;
    }

    entry.expectExit = true;
    const log = this.#log.child({ vmUuid: entry.vmUuid });
    log.info({ state, reason }, "VM state changed outside the agent");

    // The report goes out even when the cleanup fails, because the state change has happened.
    void this.serialize(entry.vmUuid, async () => {
      try {
        await this.#endRun(entry, state, reason);
      } catch (error) {
        entry.state = state;
        log.error({ err: error }, "failed to clean up after the VM ended");
      }

      this.#options.onReport({ vmUuid: entry.vmUuid, state, reason });
    });
  }

  async #refreshState(entry: VmEntry) {
    try {
      const status = await entry.qmp!.execute<{ status: string }>("query-status");
      entry.state = stateOfStatus(status.status);
    } catch (error) {
      this.#log.warn({ vmUuid: entry.vmUuid, err: error }, "failed to query VM status");
    }
  }
}
