import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { StorageError } from "./errors.js";
import { cacheEntryQueue, metadataFile } from "./image-cache.js";
import { imageCacheDir } from "./primary.js";
import { imageInfo } from "./qemu-img.js";
import { assertUuid } from "./uuid.js";

/** Options of `collectImageCacheGarbage`. */
export interface ImageCacheGcOptions {
  /** Images that the management node found unused on this storage (and host, for local storage). */
  imageUuids: string[];
  /** Seconds after its last fill during which an entry is kept even when no volume uses it. */
  graceSeconds: number;
}

/** A cache entry that garbage collection kept, with the reason. */
export interface KeptCacheEntry {
  imageUuid: string;
  reason: string;
}

/** Result of `collectImageCacheGarbage`. */
export interface ImageCacheGcResult {
  deleted: string[];
  kept: KeptCacheEntry[];
}

const VOLUME_DIRS = ["rootVolumes", "dataVolumes"];

/**
 * Deletes the named image cache entries unless one is still in use. The management node picks
 * the candidates from its database, and this function runs the last checks on the files:
 *
 * 1. Every qcow2 file of every volume on the storage is read with `qemu-img info -U`, and an
 *    entry that some file has as its backing file is kept. Only direct backing files count,
 *    because a cache file is always the base of a chain and every file of a chain is a volume file.
 * 2. An entry whose metadata was written or touched by a fill within the grace period is kept, so
 *    a root volume that is being created from it still finds it.
 *
 * Check 2 and the deletion run in the entry's queue, after any fill of that entry.
 * An unreadable volume file fails the whole collection, because it could be based on any entry.
 */
export async function collectImageCacheGarbage(
  root: string,
  options: ImageCacheGcOptions,
): Promise<ImageCacheGcResult> {
  assertGcOptions(options);

  const backingFiles = await volumeBackingFiles(root);
  const result: ImageCacheGcResult = { deleted: [], kept: [] };

  for (const imageUuid of options.imageUuids) {
    const dir = imageCacheDir(root, imageUuid);
    const user = [...backingFiles].find(([, backing]) => isInside(backing, dir));

    if (user) {
      result.kept.push({ imageUuid, reason: `backing file of ${user[0]}` });
      continue;
    }

    const reason = await cacheEntryQueue.run(dir, () =>
      deleteIfIdle(root, imageUuid, options.graceSeconds),
    );

    if (reason) {
      result.kept.push({ imageUuid, reason });
    } else {
      result.deleted.push(imageUuid);
    }
  }

  return result;
}

function assertGcOptions(options: ImageCacheGcOptions) {
  if (!Array.isArray(options.imageUuids)) {
    throw new StorageError("INVALID_ARGUMENT", "imageUuids must be an array of image UUIDs");
  }

  for (const imageUuid of options.imageUuids) {
    assertUuid(imageUuid, "image UUID");
  }

  const grace = options.graceSeconds;

  if (typeof grace !== "number" || !Number.isFinite(grace) || grace < 0) {
    throw new StorageError(
      "INVALID_ARGUMENT",
      `invalid graceSeconds ${JSON.stringify(grace)}: expected a number of seconds, 0 or more`,
    );
  }
}

/** Deletes an entry unless a fill used it within the grace period; returns why it was kept. */
async function deleteIfIdle(root: string, imageUuid: string, graceSeconds: number) {
  const dir = imageCacheDir(root, imageUuid);
  const metadata = await stat(metadataFile(root, imageUuid)).catch(() => undefined);
  const idleSeconds = metadata ? (Date.now() - metadata.mtimeMs) / 1000 : Infinity;

  if (idleSeconds < graceSeconds) {
    return `used by a fill ${Math.floor(idleSeconds)} s ago, within the ${graceSeconds} s grace period`;
  }

  // An entry without metadata is debris of a failed fill, which the next fill removes too.
  await rm(dir, { recursive: true, force: true });
  return undefined;
}

/** Maps each qcow2 file of the storage's volumes to its backing file, if it has one. */
async function volumeBackingFiles(root: string) {
  const backing = new Map<string, string>();

  for (const file of await volumeFiles(root)) {
    // -U reads the header of a file that a running QEMU holds locked.
    const info = await imageInfo(file, { allowedDirs: [root], format: "qcow2", forceShare: true });

    if (info.backingFile) {
      backing.set(file, info.backingFile);
    }
  }

  return backing;
}

/** Lists `<root>/{rootVolumes,dataVolumes}/acct-*\/vol-*\/*.qcow2`. */
async function volumeFiles(root: string) {
  const files: string[] = [];

  for (const top of VOLUME_DIRS) {
    for (const account of await subdirectories(path.join(root, top))) {
      for (const volume of await subdirectories(account)) {
        const names = await readdir(volume);
        files.push(
          ...names.filter((name) => name.endsWith(".qcow2")).map((name) => path.join(volume, name)),
        );
      }
    }
  }

  return files;
}

async function subdirectories(dir: string) {
  const entries = await readdir(dir, { withFileTypes: true }).catch((error) => {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return [];
    }

    throw error;
  });

  return entries.filter((entry) => entry.isDirectory()).map((entry) => path.join(dir, entry.name));
}

function isInside(file: string, dir: string) {
  return path.resolve(file).startsWith(`${dir}${path.sep}`);
}
