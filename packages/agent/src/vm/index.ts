export { adoptVms } from "./adopt.js";
export { buildQemuArgs } from "./cmdline.js";
export { QemuDriver, type QemuDriverOptions, type StopOptions } from "./driver.js";
export { type VmPaths, vmPaths } from "./paths.js";
export { QemuStartError } from "./process.js";
export { type ResolvedVmSpec, resolveVmSpec } from "./spec.js";
export type {
  Accelerator,
  DiskSpec,
  NicSpec,
  VmInfo,
  VmReport,
  VmSpec,
  VmState,
} from "./types.js";
