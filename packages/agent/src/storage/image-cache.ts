import { mkdir, rename, rm, utimes } from "node:fs/promises";
import path from "node:path";
import { KeyedQueue } from "../keyed-queue.js";
import { type DownloadedImage, type DownloadProgress, downloadImage } from "./download.js";
import { StorageError } from "./errors.js";
import { readJsonIfExists, writeJsonAtomic } from "./json-file.js";
import { overlayTemplate } from "./overlay-template.js";
import { imageCacheDir, imageCacheFile } from "./primary.js";
import { convertImage, imageInfo } from "./qemu-img.js";
import { SingleFlight } from "./single-flight.js";
import { redactUrl, type UrlPolicy } from "./url-policy.js";
import { assertUuid } from "./uuid.js";

/** Options of `fillImageCache`. */
export interface FillImageCacheOptions extends UrlPolicy {
  imageUuid: string;
  /**
   * Source of the image: a signed image store URL, or a `file://` URL of a local path under
   * `allowedFilePrefixes`.
   */
  url: string;
  /** Expected SHA-256 (hex) of the source file, as the image store recorded it. */
  sha256?: string;
  /** Expected MD5 (hex) of the source file; used when no SHA-256 is known. */
  md5?: string;
  maxBytes?: number;
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
}

/** An image in a primary storage's image cache. */
export interface CachedImage {
  imageUuid: string;
  /**
   * The cache file: qcow2, which root volumes use as their backing file, or for a `tar` source
   * the archive itself, which containers unpack.
   */
  path: string;
  virtualSize: number;
  actualSize: number;
  /** Checksums of the source file that was verified. */
  sourceSha256: string;
  sourceMd5: string;
  /** Format of the source file; raw sources are converted to qcow2. */
  sourceFormat: string;
}

const fills = new SingleFlight<CachedImage>();

/**
 * Serializes the fills and the garbage collection of one cache directory, so a collection never
 * deletes an entry between a fill's check and its reply.
 */
export const cacheEntryQueue = new KeyedQueue();

/**
 * Copies an image into the primary storage's image cache unless it is already there. Concurrent
 * calls for one image on one storage share a single copy. The source is verified against the
 * expected checksum before the cache file appears, and a raw source is converted to qcow2.
 */
export async function fillImageCache(
  root: string,
  options: FillImageCacheOptions,
): Promise<CachedImage> {
  const dir = imageCacheDir(root, options.imageUuid);
  assertChecksumGiven(options);
  // NOTE: callers that join a running fill share its AbortSignal, so aborting the first caller
  // fails them all.
  return fills.run(dir, () => cacheEntryQueue.run(dir, () => fill(root, options)));
}

/** Returns a cached image, or undefined when the cache has no verified copy. */
export async function findCachedImage(
  root: string,
  imageUuid: string,
): Promise<CachedImage | undefined> {
  return readJsonIfExists<CachedImage>(metadataFile(root, imageUuid));
}

/** Deletes a cached image. The caller checks that no volume on this storage still uses it. */
export async function deleteCachedImage(root: string, imageUuid: string): Promise<void> {
  const dir = imageCacheDir(root, imageUuid);
  await cacheEntryQueue.run(dir, () => rm(dir, { recursive: true, force: true }));
}

async function fill(root: string, options: FillImageCacheOptions): Promise<CachedImage> {
  const existing = await findCachedImage(root, options.imageUuid);

  if (existing) {
    await markUsed(root, options.imageUuid);
    return existing;
  }

  const dir = imageCacheDir(root, options.imageUuid);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });

  try {
    const source = await downloadImage({ ...options, dir, baseName: "source" });
    assertChecksum(source, options);
    const cached =
      source.format === "tar"
        ? await placeAsTar(root, options.imageUuid, source)
        : await placeAsQcow2(root, options.imageUuid, source);
    if (cached.sourceFormat !== "tar") {
      // Made now, the template is ready when the first root volumes are created together.
      await overlayTemplate(root, options.imageUuid, cached.virtualSize);
    }

    // The metadata is written last: its presence marks a verified cache file.
    await writeJsonAtomic(metadataFile(root, options.imageUuid), cached);
    return cached;
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Keeps a container root filesystem archive as it is; the container driver unpacks it. */
async function placeAsTar(root: string, imageUuid: string, source: DownloadedImage) {
  const target = path.join(imageCacheDir(root, imageUuid), `${imageUuid}.tar`);
  await rename(source.path, target);

  return {
    imageUuid,
    path: target,
    virtualSize: source.virtualSize,
    actualSize: source.actualSize,
    sourceSha256: source.sha256,
    sourceMd5: source.md5,
    sourceFormat: source.format,
  };
}

async function placeAsQcow2(root: string, imageUuid: string, source: DownloadedImage) {
  const target = imageCacheFile(root, imageUuid);

  if (source.format === "qcow2") {
    await rename(source.path, target);
  } else {
    await convertImage(source.path, target, { sourceFormat: "raw", targetFormat: "qcow2" });
    await rm(source.path);
  }

  const info = await imageInfo(target, { allowedDirs: [], format: "qcow2" });

  return {
    imageUuid,
    path: target,
    virtualSize: info.virtualSize,
    actualSize: info.actualSize,
    sourceSha256: source.sha256,
    sourceMd5: source.md5,
    sourceFormat: source.format,
  };
}

function assertChecksumGiven(options: FillImageCacheOptions) {
  assertUuid(options.imageUuid, "image UUID");

  if (!options.sha256 && !options.md5) {
    throw new StorageError(
      "INVALID_ARGUMENT",
      `image ${options.imageUuid} has no expected checksum; pass sha256 or md5 from the image store`,
    );
  }
}

function assertChecksum(source: DownloadedImage, options: FillImageCacheOptions) {
  const [kind, expected, actual] = options.sha256
    ? ["SHA-256", options.sha256.toLowerCase(), source.sha256]
    : ["MD5", (options.md5 ?? "").toLowerCase(), source.md5];

  if (expected !== actual) {
    throw new StorageError(
      "CHECKSUM_MISMATCH",
      `image ${options.imageUuid} from ${redactUrl(new URL(options.url))} has ${kind} ${actual}, expected ${expected}`,
    );
  }
}

/**
 * Sets the metadata file's mtime to now. Garbage collection keeps an entry whose mtime is within
 * its grace period, so a root volume that is created right after this fill finds its image.
 */
async function markUsed(root: string, imageUuid: string) {
  const time = new Date();
  await utimes(metadataFile(root, imageUuid), time, time);
}

/** Path of a cache entry's metadata file, whose presence marks a complete entry. */
export function metadataFile(root: string, imageUuid: string) {
  return path.join(imageCacheDir(root, imageUuid), `${imageUuid}.json`);
}
