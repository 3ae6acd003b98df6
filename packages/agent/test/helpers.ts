import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { run } from "../src/exec.js";
import { isAlive, waitForExit } from "../src/vm/process.js";
import { deleteTap } from "../src/vm/tap.js";

const script = resolve(import.meta.dirname, "../../../scripts/build-guest-image.sh");

/** Builds the busybox test guest image once per machine and returns its path. */
export async function guestImage() {
  const output = process.env.TSTACK_GUEST_IMAGE ?? "/var/cache/tstack/images/tstack-guest.qcow2";
  const result = await run("bash", [script, "--output", output], { timeoutMs: 300_000 });
  return result.stdout.trim().split("\n").pop()!;
}

/** Creates a copy-on-write overlay of the guest image, so each VM has a disk of its own. */
export async function overlay(base: string, path: string) {
  await run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, path]);
  return path;
}

/** Makes a temp directory named with this helper's prefix. */
export function tempDir() {
  return mkdtemp(join(tmpdir(), "tqa-"));
}

/** Returns a short random suffix for interface names, which have at most 15 bytes. */
export function shortId() {
  return randomBytes(3).toString("hex");
}

/** Returns a random VM UUID. */
export function newUuid() {
  return randomBytes(16).toString("hex");
}

/** Creates an isolated bridge with no uplink and no address; the returned function deletes it. */
export async function createBridge(name: string) {
  await run("ip", ["link", "add", name, "type", "bridge"]);
  await run("ip", ["link", "set", name, "up"]);
  return async () => {
    await run("ip", ["link", "del", name], { okExitCodes: [1] });
  };
}

/** Checks whether a network interface exists. */
export async function interfaceExists(name: string) {
  const result = await run("ip", ["link", "show", "dev", name], { okExitCodes: [1] });
  return result.exitCode === 0;
}

/** Polls `read` until `predicate` accepts its value, or fails after `timeoutMs`. */
export async function waitFor<T>(
  description: string,
  read: () => Promise<T>,
  predicate: (value: T) => boolean,
  timeoutMs = 90_000,
) {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;

  while (Date.now() < deadline) {
    last = await read();

    if (predicate(last)) {
      return last;
    }

    await sleep(100);
  }

  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${description}; last value: ${String(last)}`,
  );
}

/** Counts the occurrences of a marker in a console log. */
export function countMarker(text: string, marker: string) {
  return text.split(marker).length - 1;
}

/** Removes a directory tree, ignoring a missing one. */
export function removeDir(path: string) {
  return rm(path, { recursive: true, force: true });
}

/**
 * Kills every QEMU an agent started under a data directory, found by the run directories' pid
 * files and checked against /proc cmdline, and deletes their taps. Used by afterAll hooks.
 */
export async function killVmsUnder(dataDir: string) {
  const names = await readdir(join(dataDir, "vms")).catch(() => [] as string[]);

  for (const name of names) {
    const runDir = join(dataDir, "vms", name);
    const pid = Number((await readFile(join(runDir, "qemu.pid"), "utf8").catch(() => "")).trim());
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");

    if (pid > 1 && isAlive(pid) && cmdline.includes(name)) {
      process.kill(pid, "SIGKILL");
      await waitForExit(pid, 5000);
    }

    const spec = await readFile(join(runDir, "spec.json"), "utf8").catch(() => "{}");
    const nics = (JSON.parse(spec) as { nics?: { tapName: string }[] }).nics ?? [];

    for (const nic of nics) {
      await deleteTap(nic.tapName).catch(() => undefined);
    }
  }
}
