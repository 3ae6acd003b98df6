import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { run } from "../exec.js";

/** Creates a scratch directory under /tmp with this suite's prefix and returns its cleanup. */
export async function makeTempDir(label: string) {
  const dir = await mkdtemp(path.join(tmpdir(), `tqs-${label}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Fills 64 KiB of the guest-visible disk at `offset` with one byte value, through qemu-io. */
export async function writeGuestPattern(file: string, offset: number, byte: number) {
  await run("qemu-io", ["-f", "qcow2", "-c", `write -P ${byte} ${offset} 64k`, file]);
}

/** Returns whether 64 KiB of the guest-visible disk at `offset` all equal `byte`. */
export async function hasGuestPattern(file: string, offset: number, byte: number) {
  const args = ["-f", "qcow2", "-c", `read -P ${byte} ${offset} 64k`, file];
  const result = await run("qemu-io", args, { okExitCodes: [1] });
  const readAll = result.stdout.includes("read 65536/65536 bytes");
  return readAll && !result.stdout.includes("Pattern verification failed");
}
