import { spawn } from "node:child_process";
import { open, readFile } from "node:fs/promises";
import { CommandError, run } from "../exec.js";

/** runc binary; hosts with another layout may override it. */
export const RUNC_BINARY = process.env.TSTACK_RUNC_BINARY ?? "runc";

/** Status of a container as `runc state` prints it. */
export interface RuncState {
  id: string;
  status: "creating" | "created" | "running" | "paused" | "stopped";
  pid: number;
  bundle: string;
}

/** A runc invocation that failed, with the message runc logged. */
export class RuncError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RuncError";
  }
}

const RUN_TIMEOUT_MS = 60_000;

/**
 * Calls runc with one fixed `--root`, so the container states of an earlier agent run are found
 * again after a restart.
 */
export class Runc {
  constructor(readonly root: string) {}

  /**
   * Creates and starts a container detached from runc. The init's stdout and stderr go to
   * `consoleLog`; runc's own errors go to `runcLog` and into the thrown error.
   */
  async runDetached(
    id: string,
    bundle: string,
    pidFile: string,
    consoleLog: string,
    runcLog: string,
  ) {
    const consoleFile = await open(consoleLog, "w", 0o600);

    try {
      const args = [
        ...this.#global(runcLog),
        "run",
        "--detach",
        "--no-new-keyring",
        "--bundle",
        bundle,
        "--pid-file",
        pidFile,
        id,
      ];
      // detached: a new session, so the container init never gets the agent's terminal signals.
      const child = spawn(RUNC_BINARY, args, {
        detached: true,
        stdio: ["ignore", consoleFile.fd, consoleFile.fd],
        env: { ...process.env, LC_ALL: "C" },
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
      const code = await new Promise<number | null>((resolve, reject) => {
        child.once("error", reject);
        child.once("exit", resolve);
      }).finally(() => clearTimeout(timer));

      if (code !== 0) {
        throw new RuncError(
          `runc run ${id} failed (exit code ${code}): ${await lastError(runcLog)}`,
        );
      }
    } finally {
      await consoleFile.close();
    }
  }

  /** Returns a container's state, or undefined when runc does not know the id. */
  async state(id: string): Promise<RuncState | undefined> {
    try {
      const { stdout } = await run(RUNC_BINARY, [...this.#global(), "state", id]);
      return JSON.parse(stdout) as RuncState;
    } catch (error) {
      if (error instanceof CommandError && /does not exist/.test(error.stderr)) {
        return undefined;
      }

      throw error;
    }
  }

  /** Lists every container under the root. */
  async list(): Promise<RuncState[]> {
    const { stdout } = await run(RUNC_BINARY, [...this.#global(), "list", "--format", "json"]);
    return (JSON.parse(stdout) as RuncState[] | null) ?? [];
  }

  async kill(id: string, signal: "TERM" | "KILL") {
    await run(RUNC_BINARY, [...this.#global(), "kill", id, signal]);
  }

  async pause(id: string) {
    await run(RUNC_BINARY, [...this.#global(), "pause", id]);
  }

  async resume(id: string) {
    await run(RUNC_BINARY, [...this.#global(), "resume", id]);
  }

  /** Kills a container if it still runs (thawing it first if paused) and removes its state and cgroups. */
  async deleteForce(id: string) {
    if (await this.state(id)) {
      await run(RUNC_BINARY, [...this.#global(), "delete", "--force", id]);
    }
  }

  #global(log?: string) {
    return log
      ? ["--root", this.root, "--log", log, "--log-format", "json"]
      : ["--root", this.root];
  }
}

/** Returns the message of the last error runc wrote to its JSON log. */
async function lastError(runcLog: string) {
  const text = await readFile(runcLog, "utf8").catch(() => "");
  const lines = text.trim().split("\n").reverse();

  for (const line of lines) {
    try {
      const record = JSON.parse(line) as { level?: string; msg?: string };

      if (record.level === "error" && record.msg) {
        return record.msg;
      }
    } catch {
      // A line that is not JSON is skipped; runc writes one record per line.
    }
  }

  return "no error in runc's log";
}
