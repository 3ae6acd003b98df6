import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { type DownloadProgress, downloadImage } from "./download.js";
import { StorageError } from "./errors.js";
import { readJsonIfExists, writeJsonAtomic } from "./json-file.js";
import type { ImageFormat } from "./qemu-img.js";
import { SingleFlight } from "./single-flight.js";
import { type FilesystemCapacity, filesystemCapacity } from "./statfs.js";
import { redactUrl, type UrlPolicy } from "./url-policy.js";
import { assertUuid } from "./uuid.js";

/** Metadata the image store keeps beside each image file, as `<imageUuid>.json`. */
export interface StoredImage {
  imageUuid: string;
  format: ImageFormat;
  virtualSize: number;
  actualSize: number;
  /** File size in bytes. */
  size: number;
  sha256: string;
  md5: string;
  /** Source URL without query or credentials. */
  sourceUrl: string;
  /** ISO 8601 time the image was added. */
  createdAt: string;
}

/** Options of `addImage`. */
export interface AddImageOptions extends UrlPolicy {
  imageUuid: string;
  url: string;
  maxBytes?: number;
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
}

const additions = new SingleFlight<StoredImage>();

/** Running additions by image directory, so that deleting an image can cancel its download. */
const runningAdditions = new Map<string, { controller: AbortController; done: Promise<unknown> }>();

/** Directory that contains one image's file and metadata. */
export function storedImageDir(root: string, imageUuid: string) {
  assertUuid(imageUuid, "image UUID");
  return path.join(root, "images", imageUuid);
}

/** Path of an image's file in the store: `<root>/images/<uuid>/<uuid>.<format>`. */
export function storedImageFile(root: string, imageUuid: string, format: ImageFormat) {
  return path.join(storedImageDir(root, imageUuid), `${imageUuid}.${format}`);
}

/** Creates the store's `images` directory when missing and returns the filesystem capacity. */
export async function initImageStore(root: string): Promise<FilesystemCapacity> {
  await mkdir(path.join(root, "images"), { recursive: true });
  return filesystemCapacity(root);
}

/** Reads the capacity of the filesystem that contains the store. */
export function imageStoreCapacity(root: string): Promise<FilesystemCapacity> {
  return filesystemCapacity(root);
}

/**
 * Downloads an image into the store and records its metadata. Adding the same image from the
 * same URL again returns the stored metadata, so the management node can retry safely, and
 * concurrent calls for one image share a single download. A failed download leaves nothing
 * behind.
 */
export async function addImage(root: string, options: AddImageOptions): Promise<StoredImage> {
  const dir = storedImageDir(root, options.imageUuid);

  return additions.run(dir, () => {
    const controller = new AbortController();
    const signal = options.signal
      ? AbortSignal.any([options.signal, controller.signal])
      : controller.signal;
    const done = download(root, { ...options, signal });
    runningAdditions.set(dir, { controller, done });
    return done.finally(() => runningAdditions.delete(dir));
  });
}

async function download(root: string, options: AddImageOptions) {
  const dir = storedImageDir(root, options.imageUuid);
  const existing = await findImage(root, options.imageUuid);

  if (existing) {
    return sameSourceOrConflict(existing, options.url);
  }

  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });

  try {
    const downloaded = await downloadImage({ ...options, dir, baseName: options.imageUuid });
    const image: StoredImage = {
      imageUuid: options.imageUuid,
      format: downloaded.format,
      virtualSize: downloaded.virtualSize,
      actualSize: downloaded.actualSize,
      size: downloaded.size,
      sha256: downloaded.sha256,
      md5: downloaded.md5,
      sourceUrl: redactUrl(new URL(options.url)),
      createdAt: new Date().toISOString(),
    };

    await writeImageMetadata(root, image);
    return image;
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Writes an image's metadata last, because its presence marks a complete image. */
export async function writeImageMetadata(root: string, image: StoredImage) {
  await writeJsonAtomic(metadataFile(root, image.imageUuid), image);
}

/** Returns an image's metadata, or undefined when the store has no complete copy. */
export function findImage(root: string, imageUuid: string): Promise<StoredImage | undefined> {
  return readJsonIfExists<StoredImage>(metadataFile(root, imageUuid));
}

/** Returns an image's metadata, or rejects with NOT_FOUND. */
export async function getImage(root: string, imageUuid: string): Promise<StoredImage> {
  const image = await findImage(root, imageUuid);

  if (!image) {
    throw new StorageError("NOT_FOUND", `image ${imageUuid} not found in image store ${root}`);
  }

  return image;
}

/**
 * Deletes an image's file and metadata. A running download of the image is aborted first and
 * awaited, so it cannot store the image after the delete. Deleting a missing image succeeds.
 */
export async function deleteImage(root: string, imageUuid: string): Promise<void> {
  const dir = storedImageDir(root, imageUuid);
  const addition = runningAdditions.get(dir);

  if (addition) {
    addition.controller.abort(
      new StorageError("ABORTED", `image ${imageUuid} was deleted while it was being added`),
    );
    await addition.done.catch(() => undefined);
  }

  await rm(dir, { recursive: true, force: true });
}

function metadataFile(root: string, imageUuid: string) {
  return path.join(storedImageDir(root, imageUuid), `${imageUuid}.json`);
}

function sameSourceOrConflict(existing: StoredImage, url: string) {
  if (existing.sourceUrl !== redactUrl(new URL(url))) {
    throw new StorageError(
      "ALREADY_EXISTS",
      `image ${existing.imageUuid} already exists from ${existing.sourceUrl}; delete it first`,
    );
  }

  return existing;
}
