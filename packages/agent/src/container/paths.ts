import { join } from "node:path";
import { assertOptionPath, assertUuid } from "../validate.js";

/** Files of one container's run directory, `<data-dir>/containers/<uuid>/`, which is also its OCI bundle. */
export interface ContainerPaths {
  dir: string;
  configFile: string;
  /** Mount point of the overlay that is the container's root. */
  rootfs: string;
  /** Overlay upper and work directories; the upper one keeps the container's writes across stops. */
  upper: string;
  work: string;
  consoleLog: string;
  runcLog: string;
  pidFile: string;
  resolvConf: string;
  specFile: string;
  stateFile: string;
}

/** Returns the run directory of every container under a data directory. */
export function containersDir(dataDir: string) {
  return join(dataDir, "containers");
}

/** Returns the run directory layout of one container after validating the UUID. */
export function containerPaths(dataDir: string, vmUuid: string): ContainerPaths {
  assertUuid(vmUuid, "vmUuid");
  assertOptionPath(dataDir, "data directory");

  const dir = join(containersDir(dataDir), vmUuid);
  return {
    dir,
    configFile: join(dir, "config.json"),
    rootfs: join(dir, "rootfs"),
    upper: join(dir, "upper"),
    work: join(dir, "work"),
    consoleLog: join(dir, "console.log"),
    runcLog: join(dir, "runc.log"),
    pidFile: join(dir, "init.pid"),
    resolvConf: join(dir, "resolv.conf"),
    specFile: join(dir, "spec.json"),
    stateFile: join(dir, "state.json"),
  };
}
