import { lstat, mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { downloadsInFlight, isDownloadTemporary } from "./download.js";
import { StorageError } from "./errors.js";
import { filesystemCapacity } from "./statfs.js";
import { assertUuid } from "./uuid.js";

/** Volume types as ZStack names them. */
export type VolumeType = "Root" | "Data";

/** Identifies a volume's directory on a primary storage. */
export interface VolumeRef {
  type: VolumeType;
  accountUuid: string;
  volumeUuid: string;
}

/** Capacity of a primary storage directory, in bytes. */
export interface PrimaryStorageCapacity {
  /** Size of the filesystem that contains the storage directory. */
  totalPhysicalCapacity: number;
  /** Bytes that can still be written to that filesystem. */
  availablePhysicalCapacity: number;
  /** Bytes that the image cache and volumes under the directory take on disk. */
  usedPhysicalCapacity: number;
}

const TOP_DIRS = ["imagecache/template", "rootVolumes", "dataVolumes"];

/**
 * Creates the layout of a primary storage under `root` and returns its capacity. Local storage
 * runs this on every host; a shared mount point runs it once on the shared path.
 */
export async function initPrimaryStorage(root: string): Promise<PrimaryStorageCapacity> {
  for (const dir of TOP_DIRS) {
    await mkdir(path.join(root, dir), { recursive: true });
  }

  await removeAbandonedDownloads(root);
  return primaryStorageCapacity(root);
}

/**
 * Deletes the temporary files of image cache fills that no download of this process owns,
 * such as those of an agent killed in the middle of a fill.
 */
async function removeAbandonedDownloads(root: string) {
  const cache = path.join(root, "imagecache/template");

  for (const entry of await readdir(cache, { withFileTypes: true })) {
    if (!entry.isDirectory()) {
      continue;
    }

    const dir = path.join(cache, entry.name);

    for (const name of await readdir(dir)) {
      const file = path.join(dir, name);

      if (isDownloadTemporary(name) && !downloadsInFlight.has(file)) {
        await rm(file, { force: true });
      }
    }
  }
}

/** Reads the filesystem capacity with statfs and adds up the blocks the storage files use. */
export async function primaryStorageCapacity(root: string): Promise<PrimaryStorageCapacity> {
  const capacity = await filesystemCapacity(root);
  let used = 0;

  for (const dir of TOP_DIRS) {
    used += await allocatedBytes(path.join(root, dir));
  }

  return {
    totalPhysicalCapacity: capacity.totalCapacity,
    availablePhysicalCapacity: capacity.availableCapacity,
    usedPhysicalCapacity: used,
  };
}

/** Directory of a cached image: `<root>/imagecache/template/<imageUuid>`. */
export function imageCacheDir(root: string, imageUuid: string) {
  assertUuid(imageUuid, "image UUID");
  return path.join(root, "imagecache", "template", imageUuid);
}

/** Cached copy of an image, always qcow2: `imagecache/template/<uuid>/<uuid>.qcow2`. */
export function imageCacheFile(root: string, imageUuid: string) {
  return path.join(imageCacheDir(root, imageUuid), `${imageUuid}.qcow2`);
}

/** Directory of a volume: `<root>/rootVolumes/acct-<account>/vol-<volume>` (or dataVolumes). */
export function volumeDir(root: string, volume: VolumeRef) {
  assertUuid(volume.accountUuid, "account UUID");
  assertUuid(volume.volumeUuid, "volume UUID");

  if (volume.type !== "Root" && volume.type !== "Data") {
    const quoted = JSON.stringify(volume.type);
    throw new StorageError(
      "INVALID_ARGUMENT",
      `invalid volume type ${quoted}: expected Root or Data`,
    );
  }

  const top = volume.type === "Root" ? "rootVolumes" : "dataVolumes";
  return path.join(root, top, `acct-${volume.accountUuid}`, `vol-${volume.volumeUuid}`);
}

/**
 * Builds the path of one qcow2 file of a volume's chain: `<volumeDir>/<fileUuid>.qcow2`. A new
 * volume's only file is named after the volume, and each snapshot adds a file for the new top.
 */
export function volumeFile(root: string, volume: VolumeRef, fileUuid: string) {
  assertUuid(fileUuid, "volume file UUID");
  return path.join(volumeDir(root, volume), `${fileUuid}.qcow2`);
}

async function allocatedBytes(dir: string): Promise<number> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  let total = 0;

  for (const entry of entries) {
    const child = path.join(dir, entry.name);

    if (entry.isDirectory()) {
      total += await allocatedBytes(child);
    } else if (entry.isFile()) {
      // st_blocks counts 512-byte units whatever the filesystem block size.
      total += (await lstat(child)).blocks * 512;
    }
  }

  return total;
}
