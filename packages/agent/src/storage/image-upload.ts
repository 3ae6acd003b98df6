import { mkdir, rm } from "node:fs/promises";
import { type DownloadProgress, receiveImage, type SourceStream } from "./download.js";
import { StorageError } from "./errors.js";
import { findImage, type StoredImage, storedImageDir, writeImageMetadata } from "./image-store.js";

/** An upload the management node waits for, until its bytes arrive or its task ends. */
interface PendingUpload {
  maxBytes?: number;
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Set while a PUT streams the bytes, so a second PUT is rejected. */
  receiving: boolean;
  resolve(image: StoredImage): void;
  reject(error: Error): void;
}

/** Options of `expectUpload`. */
export interface ExpectUploadOptions {
  imageUuid: string;
  maxBytes?: number;
  onProgress?: (progress: DownloadProgress) => void;
  /** Ends the wait, for example when the task is cancelled or times out. */
  signal?: AbortSignal;
}

const pending = new Map<string, PendingUpload>();

const keyOf = (root: string, imageUuid: string) => `${root}\n${imageUuid}`;

/**
 * Opens an image store for one upload and resolves with the stored image once `acceptUpload`
 * received and checked its bytes. Rejects when the upload fails or `signal` aborts first.
 */
export async function expectUpload(
  root: string,
  options: ExpectUploadOptions,
): Promise<StoredImage> {
  storedImageDir(root, options.imageUuid);
  const key = keyOf(root, options.imageUuid);

  if (await findImage(root, options.imageUuid)) {
    throw new StorageError(
      "ALREADY_EXISTS",
      `image ${options.imageUuid} is already stored; delete it first`,
    );
  }

  if (pending.has(key)) {
    throw new StorageError(
      "ALREADY_EXISTS",
      `an upload of image ${options.imageUuid} is already expected`,
    );
  }

  return new Promise<StoredImage>((resolve, reject) => {
    const onAbort = () => {
      if (!pending.get(key)?.receiving) {
        pending.delete(key);
      }

      reject(new StorageError("ABORTED", `the upload of image ${options.imageUuid} was cancelled`));
    };
    const done = <T>(settle: (value: T) => void) => {
      return (value: T) => {
        options.signal?.removeEventListener("abort", onAbort);
        pending.delete(key);
        settle(value);
      };
    };

    pending.set(key, {
      maxBytes: options.maxBytes,
      onProgress: options.onProgress,
      signal: options.signal,
      receiving: false,
      resolve: done(resolve),
      reject: done(reject),
    });
    options.signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Stores the bytes of an expected upload with the checks of a download and returns the image.
 * A failed upload leaves no file, and the management node's wait ends with the same error.
 */
export async function acceptUpload(
  root: string,
  imageUuid: string,
  source: SourceStream,
): Promise<StoredImage> {
  const upload = pending.get(keyOf(root, imageUuid));

  if (!upload) {
    throw new StorageError(
      "NOT_FOUND",
      `no upload of image ${imageUuid} is expected; add the image with an upload:// URL first`,
    );
  }

  if (upload.receiving) {
    throw new StorageError("ALREADY_EXISTS", `image ${imageUuid} is being uploaded already`);
  }

  upload.receiving = true;
  const dir = storedImageDir(root, imageUuid);

  try {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const received = await receiveImage(source, {
      dir,
      baseName: imageUuid,
      maxBytes: upload.maxBytes,
      onProgress: upload.onProgress,
      signal: upload.signal,
      sourceName: `the upload of image ${imageUuid}`,
    });
    const image: StoredImage = {
      imageUuid,
      format: received.format,
      virtualSize: received.virtualSize,
      actualSize: received.actualSize,
      size: received.size,
      sha256: received.sha256,
      md5: received.md5,
      sourceUrl: "upload://",
      createdAt: new Date().toISOString(),
    };
    await writeImageMetadata(root, image);
    upload.resolve(image);
    return image;
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    upload.reject(error as Error);
    throw error;
  }
}
