import { constants } from "node:fs";
import { access, copyFile, mkdir, open, rm } from "node:fs/promises";
import path from "node:path";
import { StorageError } from "./errors.js";
import { findCachedImage } from "./image-cache.js";
import { overlayTemplate } from "./overlay-template.js";
import { imageCacheFile, type VolumeRef, volumeDir, volumeFile } from "./primary.js";
import {
  createImage,
  type ImageFormat,
  type ImageInfo,
  imageInfo,
  resizeImage,
} from "./qemu-img.js";

/** One qcow2 file of a volume, as stored on the primary storage. */
export interface VolumeFileInfo {
  fileUuid: string;
  path: string;
  virtualSize: number;
  actualSize: number;
  /** Absolute path of the backing file: the image cache, a snapshot file, or none. */
  backingFile?: string;
  backingFormat?: ImageFormat;
}

/** Bytes of the qcow2 header fields up to and including the virtual size. */
const QCOW2_HEADER_BYTES = 32;

/** "QFI\xfb", the first four bytes of every qcow2 file. */
const QCOW2_MAGIC = 0x514649fb;

/** Options of `createRootVolume`. */
export interface CreateRootVolumeOptions {
  volume: VolumeRef & { type: "Root" };
  imageUuid: string;
  /** Virtual size in bytes; the image's size when unset. Must not be smaller than the image. */
  size?: number;
}

/**
 * Creates a root volume as a qcow2 overlay on the cached image, so it shares the image's data
 * and stores only its own writes. The overlay is a copy of the image's overlay template for that
 * size (see `overlayTemplate`). The image must already be in the cache. Repeating the call for a
 * volume that already exists on the same image returns the existing file.
 */
export async function createRootVolume(
  root: string,
  options: CreateRootVolumeOptions,
): Promise<VolumeFileInfo> {
  const { volume } = options;
  const file = volumeFile(root, volume, volume.volumeUuid);
  const cached = await findCachedImage(root, options.imageUuid);

  if (!cached) {
    throw new StorageError(
      "NOT_FOUND",
      `image ${options.imageUuid} is not in the image cache of ${root}; fill the cache first`,
    );
  }

  if (options.size !== undefined && options.size < cached.virtualSize) {
    throw new StorageError(
      "INVALID_ARGUMENT",
      `root volume size ${options.size} is smaller than image ${options.imageUuid} (${cached.virtualSize} bytes)`,
    );
  }

  if (cached.sourceFormat === "tar") {
    return createContainerRootVolume(root, volume, cached.virtualSize);
  }

  const existing = await existingFile(root, file);

  if (existing) {
    return sameBackingOrConflict(
      existing,
      volume.volumeUuid,
      imageCacheFile(root, options.imageUuid),
    );
  }

  // The path is rebuilt from the UUID, never read from the metadata file.
  const backingFile = imageCacheFile(root, options.imageUuid);

  const size = options.size ?? cached.virtualSize;
  const template = await overlayTemplate(root, options.imageUuid, size);

  return inNewVolumeDir(root, volume, file, async () => {
    await copyFile(template, file, constants.COPYFILE_EXCL);
    return newOverlayInfo(volume.volumeUuid, file, backingFile);
  });
}

/**
 * Describes a new overlay from its qcow2 header and `stat`, without a qemu-img process. The cache
 * file needs no `qemu-img info` here: the fill checked it (qcow2, no backing file) before writing
 * its metadata, and nothing writes it later.
 */
async function newOverlayInfo(fileUuid: string, file: string, backingFile: string) {
  const header = Buffer.alloc(QCOW2_HEADER_BYTES);
  const handle = await open(file, "r");

  try {
    await handle.read(header, 0, QCOW2_HEADER_BYTES, 0);

    if (header.readUInt32BE(0) !== QCOW2_MAGIC) {
      throw new StorageError(
        "CORRUPT_IMAGE",
        `new root volume ${file} has no qcow2 header; delete the overlay-<size>.qcow2 template in the image's cache directory so that it is made again`,
      );
    }

    const { blocks } = await handle.stat();
    return {
      fileUuid,
      path: file,
      // qcow2 header: magic at byte 0, virtual size as a big-endian u64 at byte 24.
      virtualSize: Number(header.readBigUInt64BE(24)),
      actualSize: blocks * 512,
      backingFile,
      backingFormat: "qcow2" as const,
    };
  } finally {
    await handle.close();
  }
}

/**
 * Creates a container's root volume: the `upper` directory of its overlay root, which keeps the
 * container's writes. Its size is the archive's until it is used; no quota is enforced.
 */
async function createContainerRootVolume(
  root: string,
  volume: VolumeRef,
  archiveSize: number,
): Promise<VolumeFileInfo> {
  const upper = path.join(volumeDir(root, volume), "upper");
  await mkdir(upper, { recursive: true, mode: 0o755 });
  return { fileUuid: volume.volumeUuid, path: upper, virtualSize: archiveSize, actualSize: 0 };
}

/** Creates an empty qcow2 data volume of `size` bytes. Repeating the call returns the file. */
export async function createDataVolume(
  root: string,
  options: { volume: VolumeRef & { type: "Data" }; size: number },
): Promise<VolumeFileInfo> {
  const { volume } = options;
  const file = volumeFile(root, volume, volume.volumeUuid);
  const existing = await existingFile(root, file);

  if (existing) {
    return toVolumeFile(volume.volumeUuid, existing);
  }

  return inNewVolumeDir(root, volume, file, async () => {
    await createImage(file, { format: "qcow2", size: options.size });
    return toVolumeFile(
      volume.volumeUuid,
      await imageInfo(file, { allowedDirs: [], format: "qcow2" }),
    );
  });
}

/** Deletes a volume's directory with all its files and snapshots. Deleting twice succeeds. */
export async function deleteVolume(root: string, volume: VolumeRef): Promise<void> {
  await rm(volumeDir(root, volume), { recursive: true, force: true });
}

/**
 * Reads one file of a volume, checking that its backing chain stays inside the storage. It reads
 * with `-U` because a running VM holds a write lock on its top file, so the allocated size of that
 * file may lag behind the guest's writes in flight.
 */
export async function volumeFileInfo(
  root: string,
  volume: VolumeRef,
  fileUuid: string,
): Promise<VolumeFileInfo> {
  const file = volumeFile(root, volume, fileUuid);
  const info = await imageInfo(file, { allowedDirs: [root], format: "qcow2", forceShare: true });
  return toVolumeFile(fileUuid, info);
}

/**
 * Grows the top file of a stopped VM's volume to `size` bytes with `qemu-img resize`. Only the
 * top file changes: the guest reads past the backing file's end as zeros. Shrinking is rejected
 * because it would cut off data; asking for the current size changes nothing.
 */
export async function growVolume(
  root: string,
  volume: VolumeRef,
  topFileUuid: string,
  size: number,
): Promise<VolumeFileInfo> {
  const file = volumeFile(root, volume, topFileUuid);
  const before = await imageInfo(file, { allowedDirs: [root], format: "qcow2" });

  if (size < before.virtualSize) {
    throw new StorageError(
      "INVALID_ARGUMENT",
      `cannot shrink volume ${volume.volumeUuid} from ${before.virtualSize} to ${size} bytes: volumes only grow`,
    );
  }

  if (size > before.virtualSize) {
    await resizeImage(file, "qcow2", size);
  }

  return volumeFileInfo(root, volume, topFileUuid);
}

/** Converts qemu-img's view of a volume file to the reply shape. */
export function toVolumeFile(fileUuid: string, info: ImageInfo): VolumeFileInfo {
  const result: VolumeFileInfo = {
    fileUuid,
    path: info.path,
    virtualSize: info.virtualSize,
    actualSize: info.actualSize,
  };

  if (info.backingFile !== undefined) {
    result.backingFile = info.backingFile;
    result.backingFormat = info.backingFormat;
  }

  return result;
}

async function inNewVolumeDir(
  root: string,
  volume: VolumeRef,
  file: string,
  create: () => Promise<VolumeFileInfo>,
) {
  // The account directory is shared by concurrent calls, so it is never removed on failure.
  const dir = volumeDir(root, volume);
  await mkdir(path.dirname(dir), { recursive: true });
  const created = await mkdir(dir).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === "EEXIST") {
        return false;
      }

      throw error;
    },
  );

  try {
    return await create();
  } catch (error) {
    // Undo only what this call made: the volume directory, or else the one file.
    await rm(created ? dir : file, { recursive: true, force: true });
    throw error;
  }
}

async function existingFile(root: string, file: string) {
  const exists = await access(file).then(
    () => true,
    () => false,
  );

  return exists ? imageInfo(file, { allowedDirs: [root], format: "qcow2" }) : undefined;
}

function sameBackingOrConflict(existing: ImageInfo, volumeUuid: string, expected: string) {
  if (existing.backingFile !== expected) {
    throw new StorageError(
      "ALREADY_EXISTS",
      `volume ${volumeUuid} already exists with backing file ${existing.backingFile ?? "none"}`,
    );
  }

  return toVolumeFile(volumeUuid, existing);
}
