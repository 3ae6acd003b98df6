import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { QmpClient } from "../qmp/index.js";
import type { VmPaths } from "./paths.js";

/** QEMU binary; tests and hosts with another layout may override it. */
export const QEMU_BINARY = process.env.TSTACK_QEMU_BINARY ?? "qemu-system-x86_64";

/** A QEMU process that failed before its QMP socket accepted a connection. */
export class QemuStartError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = "QemuStartError";
  }
}

/** A started QEMU process with its QMP connection. */
export interface SpawnedQemu {
  pid: number;
  qmp: QmpClient;
  /** Resolves with the exit code when the process, a child of this agent, exits. */
  exited: Promise<number | null>;
}

/**
 * Starts QEMU in its own session with stdio in files of the run directory, so it outlives the
 * agent, and connects QMP. If QEMU exits first, or QMP does not respond within `timeoutMs`, the
 * process is killed and the error carries QEMU's stderr.
 */
export async function spawnQemu(
  args: string[],
  paths: VmPaths,
  timeoutMs: number,
): Promise<SpawnedQemu> {
  const stdout = await open(paths.stdoutLog, "w");
  const stderr = await open(paths.stderrLog, "w");
  const child = spawn(QEMU_BINARY, args, {
    detached: true,
    stdio: ["ignore", stdout.fd, stderr.fd],
    env: { ...process.env, LC_ALL: "C" },
  });

  // Listeners go on before the first await, because `spawn` and `exit` may fire meanwhile.
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.on("exit", (code) => {
      exitCode = code;
      resolve(code);
    });
    child.on("error", () => resolve(null));
  });
  const spawned = new Promise<Error | undefined>((resolve) => {
    child.once("spawn", () => resolve(undefined));
    child.once("error", resolve);
  });
  child.unref();

  await stdout.close();
  await stderr.close();
  const spawnError = await spawned;

  if (spawnError || child.pid === undefined) {
    throw new QemuStartError(`failed to start ${QEMU_BINARY}: ${spawnError?.message}`, "");
  }

  const pid = child.pid;
  const deadline = Date.now() + timeoutMs;

  while (exitCode === undefined && Date.now() < deadline) {
    try {
      const qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: 2_000 });
      return { pid, qmp, exited };
    } catch {
      await sleep(20);
    }
  }

  if (exitCode === undefined) {
    process.kill(pid, "SIGKILL");
    await exited;
  }

  const text = (await readFile(paths.stderrLog, "utf8").catch(() => "")).trim();
  const reason =
    exitCode === undefined
      ? `QMP did not answer within ${timeoutMs} ms`
      : `exited with code ${exitCode}`;
  throw new QemuStartError(`QEMU ${reason}${text ? `: ${text}` : ""}`, text);
}

/**
 * Checks whether a process runs, without sending it a signal. A zombie counts as ended: an
 * orphaned QEMU stays one until init reaps it, which some minimal init systems do late.
 */
export function isAlive(pid: number) {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") {
      return false;
    }
  }

  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

/**
 * Checks that a process is the QEMU of a VM: its command line must contain the VM UUID. This
 * guards against a reused pid after a reboot of the host or a long agent downtime.
 */
export async function isQemuOf(pid: number, vmUuid: string) {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return cmdline.includes(vmUuid);
  } catch {
    return false;
  }
}

/** Waits until a process is gone; returns false if it still exists after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;

  while (Date.now() < deadline) {
    if (!isAlive(pid)) {
      return true;
    }

    await sleep(25);
  }

  return !isAlive(pid);
}

/** Reads the pid QEMU wrote to its -pidfile, or undefined when it is missing or invalid. */
export async function readPidFile(path: string) {
  const text = await readFile(path, "utf8").catch(() => "");
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}
