import { access, readdir, rename, rm } from "node:fs/promises";
import { StorageError } from "./errors.js";
import { createOverlay } from "./overlay.js";
import { type VolumeRef, volumeDir, volumeFile } from "./primary.js";
import { rebaseImage } from "./qemu-img.js";
import { type VolumeFileInfo, volumeFileInfo } from "./volumes.js";

/** Options of `takeVolumeSnapshot`. */
export interface TakeVolumeSnapshotOptions {
  volume: VolumeRef;
  /** The volume's current top file, which becomes the snapshot. */
  topFileUuid: string;
  /** Name of the new top file that receives the writes from now on. */
  newTopFileUuid: string;
}

/** Options of `revertVolumeSnapshot`. */
export interface RevertVolumeSnapshotOptions {
  volume: VolumeRef;
  /** The snapshot file to go back to. */
  snapshotFileUuid: string;
  /** The volume's current top file, discarded by the revert. */
  currentTopFileUuid: string;
  newTopFileUuid: string;
}

/** Options of `deleteVolumeSnapshot`. */
export interface DeleteVolumeSnapshotOptions {
  volume: VolumeRef;
  snapshotFileUuid: string;
  /** The volume's current top file, named so that it can never be deleted as a snapshot. */
  currentTopFileUuid: string;
}

/**
 * Takes an offline snapshot: the current top file is frozen and a new qcow2 overlay on it
 * becomes the volume's top. The caller records the old top as the snapshot and points the VM
 * at the new top. Repeating the call after success returns the same result.
 */
export async function takeVolumeSnapshot(
  root: string,
  options: TakeVolumeSnapshotOptions,
): Promise<{ snapshot: VolumeFileInfo; newTop: VolumeFileInfo }> {
  const { volume, topFileUuid, newTopFileUuid } = options;
  const newTop = await overlayOnce(root, volume, topFileUuid, newTopFileUuid);
  return { snapshot: await volumeFileInfo(root, volume, topFileUuid), newTop };
}

/**
 * Reverts a volume to a snapshot: a fresh overlay on the snapshot file becomes the top, and the
 * old top is deleted unless another file of the volume is based on it.
 */
export async function revertVolumeSnapshot(
  root: string,
  options: RevertVolumeSnapshotOptions,
): Promise<VolumeFileInfo> {
  const { volume, snapshotFileUuid, currentTopFileUuid, newTopFileUuid } = options;
  assertNotTop(snapshotFileUuid, currentTopFileUuid, "revert to");

  const newTop = await overlayOnce(root, volume, snapshotFileUuid, newTopFileUuid);
  const oldTop = volumeFile(root, volume, currentTopFileUuid);
  const files = await listVolumeFiles(root, volume);

  if (!files.some((file) => file.backingFile === oldTop)) {
    await rm(oldTop, { force: true });
  }

  return newTop;
}

/**
 * Deletes a snapshot by merging it into the files based on it: each child is rebased onto the
 * snapshot's own backing file (qemu-img copies the snapshot's clusters into the child), then the
 * snapshot file is removed. Safe to repeat after a failure part-way through.
 */
export async function deleteVolumeSnapshot(
  root: string,
  options: DeleteVolumeSnapshotOptions,
): Promise<{ rebasedFileUuids: string[] }> {
  const { volume, snapshotFileUuid, currentTopFileUuid } = options;
  assertNotTop(snapshotFileUuid, currentTopFileUuid, "delete");

  const file = volumeFile(root, volume, snapshotFileUuid);

  if (!(await exists(file))) {
    return { rebasedFileUuids: [] };
  }

  const snapshot = await volumeFileInfo(root, volume, snapshotFileUuid);
  const children = (await listVolumeFiles(root, volume)).filter((f) => f.backingFile === file);
  const parent = snapshot.backingFile ?? null;
  const parentFormat = snapshot.backingFormat ?? "qcow2";

  for (const child of children) {
    await rebaseImage(child.path, { backingFile: parent, backingFormat: parentFormat });
  }

  await rm(file);
  return { rebasedFileUuids: children.map((child) => child.fileUuid) };
}

/** Lists the qcow2 files of a volume with their backing files, to rebuild its snapshot tree. */
export async function listVolumeFiles(root: string, volume: VolumeRef): Promise<VolumeFileInfo[]> {
  const names = await readdir(volumeDir(root, volume)).catch(() => [] as string[]);
  const files: VolumeFileInfo[] = [];

  for (const name of names) {
    const match = /^([0-9a-f]{32})\.qcow2$/.exec(name);

    if (match) {
      files.push(await volumeFileInfo(root, volume, match[1]!));
    }
  }

  return files;
}

async function overlayOnce(root: string, volume: VolumeRef, baseUuid: string, overlayUuid: string) {
  const base = volumeFile(root, volume, baseUuid);
  const overlay = volumeFile(root, volume, overlayUuid);

  if (await exists(overlay)) {
    const existing = await volumeFileInfo(root, volume, overlayUuid);

    if (existing.backingFile !== base) {
      throw new StorageError(
        "ALREADY_EXISTS",
        `volume file ${overlayUuid} already exists on ${existing.backingFile ?? "no backing file"}`,
      );
    }

    return existing;
  }

  // The overlay gets its name only when complete, so an agent killed part-way leaves a `.part`
  // file, which no listing of the volume's files includes, and never a broken qcow2 file.
  const partial = `${overlay}.part`;
  await rm(partial, { force: true });
  await createOverlay(base, partial, { allowedDirs: [root] });
  await rename(partial, overlay);
  return volumeFileInfo(root, volume, overlayUuid);
}

function assertNotTop(fileUuid: string, topUuid: string, action: string) {
  if (fileUuid === topUuid) {
    throw new StorageError(
      "INVALID_ARGUMENT",
      `cannot ${action} volume file ${fileUuid}: it is the volume's current top, not a snapshot`,
    );
  }
}

function exists(file: string) {
  return access(file).then(
    () => true,
    () => false,
  );
}
