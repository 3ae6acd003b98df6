import type { QmpClient } from "../qmp/index.js";
import { type VolumeRef, volumeFile } from "../storage/primary.js";
import { type VolumeFileInfo, volumeFileInfo } from "../storage/volumes.js";
import { assertUuid, ValidationError } from "../validate.js";
import { findDisk } from "./hotplug.js";

/** Options of `snapshotDisk`. */
export interface SnapshotDiskOptions {
  volume: VolumeRef;
  /** The volume's current top file, open in QEMU, which becomes the snapshot. */
  topFileUuid: string;
  /** Name of the new top file that QEMU creates and writes to from now on. */
  newTopFileUuid: string;
}

/** Names the block node of a new top file after the file. QEMU keeps node names to 31 bytes. */
export function snapshotNodeName(fileUuid: string) {
  assertUuid(fileUuid, "newTopFileUuid");
  return `snap-${fileUuid.slice(0, 26)}`;
}

/**
 * Takes an online snapshot of a running or paused VM's disk with QMP `blockdev-snapshot-sync`:
 * QEMU creates a qcow2 overlay on the current top file, in the same directory and with the same
 * absolute backing path as an offline snapshot, and sends the guest's writes to it. The guest is
 * not quiesced, so the frozen file is crash-consistent. A retry after success returns the same
 * result, because the new file is then the disk's top.
 */
export async function snapshotDisk(
  qmp: QmpClient,
  root: string,
  options: SnapshotDiskOptions,
): Promise<{ snapshot: VolumeFileInfo; newTop: VolumeFileInfo }> {
  const { volume, topFileUuid, newTopFileUuid } = options;
  const topPath = volumeFile(root, volume, topFileUuid);
  const newTopPath = volumeFile(root, volume, newTopFileUuid);
  const disk = await findDisk(qmp, topPath);

  if (disk?.inserted) {
    await qmp.execute("blockdev-snapshot-sync", {
      "node-name": disk.inserted["node-name"],
      "snapshot-file": newTopPath,
      "snapshot-node-name": snapshotNodeName(newTopFileUuid),
      format: "qcow2",
      mode: "absolute-paths",
    });
  } else if (!(await findDisk(qmp, newTopPath))) {
    throw new ValidationError(
      `no disk of the VM uses ${topPath}; the volume is not attached to this VM, or its top file changed`,
    );
  }

  return {
    snapshot: await volumeFileInfo(root, volume, topFileUuid),
    newTop: await volumeFileInfo(root, volume, newTopFileUuid),
  };
}
