import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CommandError, run } from "../exec.js";
import { QEMU_BINARY } from "../vm/process.js";
import type { Accelerator } from "../vm/types.js";

/** Result of the accelerator probe. */
export interface AcceleratorProbe {
  accel: Accelerator;
  /** Reason KVM is or is not used, for the host facts. */
  reason: string;
}

const PROBE_TIMEOUT_MS = 5_000;

// isa-debug-exit makes QEMU exit with (value << 1) | 1, so writing 1 gives exit status 3.
const DEBUG_EXIT_STATUS = 3;

/**
 * Returns a boot sector that writes 1 to I/O port 0x501 and halts:
 * `mov dx, 0x501; mov al, 1; out dx, al; hlt`, padded to 510 bytes, then the 0x55AA signature.
 */
export function probeBootSector() {
  const sector = Buffer.alloc(512);
  Buffer.from([0xba, 0x01, 0x05, 0xb0, 0x01, 0xee, 0xf4]).copy(sector);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/**
 * Runs a tiny guest under an accelerator and returns whether it reached the debug-exit port
 * within 5 s. A present /dev/kvm is not enough: on some nested hosts a KVM guest hangs.
 *
 * NOTE: the probe can pass where real guests fail. On a nested Debian 12 host without vmx in the
 * CPU flags, this probe exited with status 3 under KVM, yet the busybox test guest stopped with
 * "KVM internal error. Suberror: 1" before printing anything. Such hosts need `--accel tcg`.
 */
export async function acceleratorWorks(accel: Accelerator) {
  const dir = await mkdtemp(join(tmpdir(), "tstack-accel-probe-"));

  try {
    const image = join(dir, "boot.img");
    await writeFile(image, probeBootSector());

    const args = [
      ["-accel", accel, "-nodefaults", "-no-user-config", "-display", "none", "-m", "16"],
      ["-drive", `file=${image},format=raw,if=ide`],
      ["-device", "isa-debug-exit,iobase=0x501,iosize=1"],
    ].flat();
    const result = await run(QEMU_BINARY, args, {
      timeoutMs: PROBE_TIMEOUT_MS,
      okExitCodes: [DEBUG_EXIT_STATUS],
    });

    return { ok: result.exitCode === DEBUG_EXIT_STATUS, detail: "" };
  } catch (error) {
    const detail = error instanceof CommandError ? error.message : String(error);
    return { ok: false, detail };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Chooses KVM when /dev/kvm exists and a probe guest really runs under it, TCG otherwise. */
export async function probeAccelerator(): Promise<AcceleratorProbe> {
  const hasDevice = await access("/dev/kvm").then(
    () => true,
    () => false,
  );

  if (!hasDevice) {
    return { accel: "tcg", reason: "/dev/kvm does not exist" };
  }

  // A guest CPU without vmx or svm is itself virtualized. There a KVM guest can get far
  // (the probe's boot sector even reaches long mode) and still stop with "KVM internal error.
  // Suberror: 1" when KVM has to emulate an instruction, as SYSLINUX's mode switches need.
  const flags = await readFile("/proc/cpuinfo", "utf8").catch(() => "");

  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(flags)) {
    return {
      accel: "tcg",
      reason:
        "/dev/kvm exists but the CPU flags show neither vmx nor svm, so KVM is nested and unreliable",
    };
  }

  const probe = await acceleratorWorks("kvm");

  if (probe.ok) {
    return { accel: "kvm", reason: "a probe guest ran under KVM" };
  }

  return {
    accel: "tcg",
    reason: `/dev/kvm exists but a probe guest did not finish under KVM: ${probe.detail}`,
  };
}
