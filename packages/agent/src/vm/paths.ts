import { join } from "node:path";
import { assertOptionPath, assertUuid, ValidationError } from "../validate.js";

/** Files of one VM's run directory, `<data-dir>/vms/<uuid>/`. */
export interface VmPaths {
  dir: string;
  qmpSocket: string;
  pidFile: string;
  consoleLog: string;
  stdoutLog: string;
  stderrLog: string;
  /** The VmSpec the VM was started with, plus the chosen tap names; read back on re-adoption. */
  specFile: string;
  /** The last state recorded for a VM whose QEMU process is gone. */
  stateFile: string;
}

// sockaddr_un.sun_path has room for 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH = 107;

/** Returns the run directory of every VM under a data directory. */
export function vmsDir(dataDir: string) {
  return join(dataDir, "vms");
}

/** Returns the run directory layout of one VM after validating the UUID and path lengths. */
export function vmPaths(dataDir: string, vmUuid: string): VmPaths {
  assertUuid(vmUuid, "vmUuid");
  assertOptionPath(dataDir, "data directory");

  const dir = join(vmsDir(dataDir), vmUuid);
  const paths = {
    dir,
    qmpSocket: join(dir, "qmp.sock"),
    pidFile: join(dir, "qemu.pid"),
    consoleLog: join(dir, "console.log"),
    stdoutLog: join(dir, "qemu.stdout"),
    stderrLog: join(dir, "qemu.stderr"),
    specFile: join(dir, "spec.json"),
    stateFile: join(dir, "state.json"),
  };

  if (Buffer.byteLength(paths.qmpSocket) > MAX_SOCKET_PATH) {
    throw new ValidationError(
      `QMP socket path ${paths.qmpSocket} is longer than ${MAX_SOCKET_PATH} bytes: use a shorter --data-dir`,
    );
  }

  return paths;
}
