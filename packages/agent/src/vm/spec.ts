import {
  assertInteger,
  assertInterfaceName,
  assertMac,
  assertOptionPath,
  assertUuid,
  ValidationError,
} from "../validate.js";
import type { NicSpec, VmSpec } from "./types.js";

/** A NIC whose tap device name is decided. */
export interface ResolvedNic extends NicSpec {
  tapName: string;
}

/** A validated VmSpec with every tap name decided. */
export interface ResolvedVmSpec extends VmSpec {
  nics: ResolvedNic[];
}

const MAX_DISKS = 16;
const MAX_NICS = 8;

/**
 * Validates a start request and fills in default tap names. Every string that later becomes a
 * device name, path or QEMU option is checked here.
 */
export function resolveVmSpec(input: VmSpec): ResolvedVmSpec {
  assertUuid(input.vmUuid, "vmUuid");
  assertInteger(input.memoryMiB, "memoryMiB", 16, 4 * 1024 * 1024);
  assertInteger(input.cpuNum, "cpuNum", 1, 255);

  if (!Array.isArray(input.disks) || input.disks.length === 0 || input.disks.length > MAX_DISKS) {
    throw new ValidationError(`invalid disks: expected 1 to ${MAX_DISKS} disks`);
  }

  if (!Array.isArray(input.nics) || input.nics.length > MAX_NICS) {
    throw new ValidationError(`invalid nics: expected at most ${MAX_NICS} NICs`);
  }

  input.disks.forEach((disk, index) => {
    assertOptionPath(disk.path, `disks[${index}].path`);

    if (disk.format !== undefined && disk.format !== "qcow2" && disk.format !== "raw") {
      throw new ValidationError(`invalid disks[${index}].format ${JSON.stringify(disk.format)}`);
    }
  });

  if (input.cdrom !== undefined) {
    assertOptionPath(input.cdrom.path, "cdrom.path");

    if (input.cdrom.format !== undefined && !["qcow2", "raw"].includes(input.cdrom.format)) {
      throw new ValidationError(`invalid cdrom.format ${JSON.stringify(input.cdrom.format)}`);
    }
  }

  const nics = input.nics.map((nic, index) => resolveNic(input.vmUuid, nic, index));
  const taps = new Set(nics.map((nic) => nic.tapName));

  if (taps.size !== nics.length) {
    throw new ValidationError("invalid nics: two NICs have the same tapName");
  }

  if (input.vncPassword !== undefined && typeof input.vncPassword !== "string") {
    throw new ValidationError("invalid vncPassword: expected a string");
  }

  return { ...input, nics };
}

function resolveNic(vmUuid: string, nic: NicSpec, index: number): ResolvedNic {
  assertMac(nic.mac, `nics[${index}].mac`);
  assertInterfaceName(nic.bridgeName, `nics[${index}].bridgeName`);

  const tapName = nic.tapName ?? `vnic${vmUuid.slice(0, 8)}.${index}`;
  assertInterfaceName(tapName, `nics[${index}].tapName`);

  return { mac: nic.mac, bridgeName: nic.bridgeName, tapName };
}
