import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Reads the pid a daemon wrote and returns it only if that process still runs with `marker` in
 * its command line, so a pid reused by an unrelated process is never signalled.
 */
export async function readLivePid(pidFile: string, marker: string): Promise<number | undefined> {
  const text = await readFile(pidFile, "utf8").catch(() => "");
  const pid = Number.parseInt(text.trim(), 10);

  if (!Number.isInteger(pid) || pid <= 1) {
    return undefined;
  }

  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return cmdline.split("\0").some((arg) => arg.includes(marker)) ? pid : undefined;
}

/**
 * Returns whether a process runs. A zombie counts as gone: a daemonised dnsmasq is reparented to
 * init, which may reap it only seconds after it exited.
 */
export function processExists(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Sends SIGTERM, waits up to `graceMs` for the exit, then sends SIGKILL. */
export async function stopProcess(pid: number, graceMs = 3000): Promise<void> {
  if (!processExists(pid)) {
    return;
  }

  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;

  while (Date.now() < deadline) {
    if (!processExists(pid)) {
      return;
    }

    await sleep(25);
  }

  process.kill(pid, "SIGKILL");
}

/** Polls `check` every 25 ms until it returns true or `timeoutMs` passes. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;

  while (Date.now() < deadline) {
    if (await check()) {
      return;
    }

    await sleep(25);
  }

  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
