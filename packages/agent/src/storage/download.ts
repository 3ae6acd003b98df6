import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { access, open, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Logger } from "pino";
import { checkTarball, looksLikeTar } from "../container/image-cache.js";
import { CommandError } from "../exec.js";
import { ValidationError } from "../validate.js";
import { StorageError } from "./errors.js";
import { openHttp } from "./http-source.js";
import { checkImage, type ImageFormat, imageInfo } from "./qemu-img.js";
import { checkUrl, redactUrl, type UrlPolicy } from "./url-policy.js";

/** Bytes received so far, and the total when the source announced it. */
export interface DownloadProgress {
  bytesDone: number;
  totalBytes?: number;
}

/** Options of `downloadImage`. */
export interface DownloadOptions extends UrlPolicy {
  /** http, https or file URL of the image. */
  url: string;
  /** Existing directory that receives the image. */
  dir: string;
  /** File name without extension; the image becomes `<dir>/<baseName>.<format>`. */
  baseName: string;
  /** Reject the image once it exceeds this many bytes. */
  maxBytes?: number;
  /** Fail an http transfer that receives nothing for this long; 60 s when unset. */
  idleTimeoutMs?: number;
  /** Redirects to follow, each checked against the policy again; 5 when unset. */
  maxRedirects?: number;
  /** Called for every received chunk. */
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
  logger?: Logger;
}

/** An image that was downloaded, inspected by qemu-img and moved to its final name. */
export interface DownloadedImage {
  path: string;
  /** Format found by `qemu-img info`, never taken from the caller. */
  format: ImageFormat;
  virtualSize: number;
  actualSize: number;
  /** Bytes received. */
  size: number;
  sha256: string;
  md5: string;
}

/** Streamed bytes of a source, and their total when known. */
export interface SourceStream {
  stream: NodeJS.ReadableStream;
  totalBytes?: number;
}

const BASE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

/**
 * Downloads an image into `options.dir`. The bytes go to a temporary file in the same directory,
 * which is fsynced, inspected with qemu-img (format from `qemu-img info`, then `qemu-img check`
 * for qcow2) and only then renamed to `<baseName>.<format>`. On any failure or abort the
 * temporary file is removed and the error gives the reason.
 */
export async function downloadImage(options: DownloadOptions): Promise<DownloadedImage> {
  assertBaseName(options.baseName);

  const checked = await checkUrl(options.url, options);
  const redactedUrl = redactUrl(checked.url);
  options.logger?.debug({ url: redactedUrl, dir: options.dir }, "image download started");
  let source: SourceStream;

  try {
    source =
      checked.kind === "file"
        ? { stream: createReadStream(checked.path), totalBytes: checked.size }
        : await openHttp(checked, options);
  } catch (error) {
    throw describeFailure(error, redactedUrl, options.signal);
  }

  return receiveImage(source, { ...options, sourceName: redactedUrl });
}

/** Options of `receiveImage`: where the image goes, limits, and a name of its source for errors. */
export interface ReceiveOptions
  extends Pick<
    DownloadOptions,
    "dir" | "baseName" | "maxBytes" | "onProgress" | "signal" | "logger"
  > {
  /** The source as error messages name it, such as a URL without its query. */
  sourceName: string;
}

/** Temporary files of downloads running in this process, which a sweep must leave alone. */
export const downloadsInFlight = new Set<string>();

/** Returns whether a file name is the temporary file of a download. */
export function isDownloadTemporary(name: string) {
  return /^\..+\.download-[0-9a-f]{12}$/.test(name);
}

/**
 * Stores an image from a stream, such as an HTTP download or an upload, with the same checks:
 * a temporary file, fsync, qemu-img inspection, then a rename to `<baseName>.<format>`. On any
 * failure or abort the temporary file is removed.
 */
export async function receiveImage(
  source: SourceStream,
  options: ReceiveOptions,
): Promise<DownloadedImage> {
  assertBaseName(options.baseName);

  const sourceName = options.sourceName;
  const temporary = path.join(
    options.dir,
    `.${options.baseName}.download-${randomBytes(6).toString("hex")}`,
  );
  const started = Date.now();
  downloadsInFlight.add(temporary);

  try {
    const received = await receive(source, temporary, options, sourceName);
    const image = await inspect(temporary, sourceName, options.signal);
    const target = path.join(options.dir, `${options.baseName}.${image.format}`);

    await assertAbsent(target);
    await rename(temporary, target);
    await syncDirectory(options.dir);

    const seconds = (Date.now() - started) / 1000;
    options.logger?.debug({ url: sourceName, bytes: received.size, seconds }, "image stored");
    return { path: target, ...image, ...received };
  } catch (error) {
    await rm(temporary, { force: true });
    throw describeFailure(error, sourceName, options.signal);
  } finally {
    downloadsInFlight.delete(temporary);
  }
}

async function receive(
  source: SourceStream,
  temporary: string,
  options: ReceiveOptions,
  redactedUrl: string,
) {
  const { totalBytes } = source;

  if (options.maxBytes !== undefined && totalBytes !== undefined && totalBytes > options.maxBytes) {
    throw tooLarge(redactedUrl, totalBytes, options.maxBytes);
  }

  const sha256 = createHash("sha256");
  const md5 = createHash("md5");
  let bytesDone = 0;

  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytesDone += chunk.length;

      if (options.maxBytes !== undefined && bytesDone > options.maxBytes) {
        callback(tooLarge(redactedUrl, bytesDone, options.maxBytes));
        return;
      }

      sha256.update(chunk);
      md5.update(chunk);
      options.onProgress?.({ bytesDone, totalBytes });
      callback(null, chunk);
    },
  });

  const output = createWriteStream(temporary, { flags: "wx", mode: 0o644 });
  await pipeline(source.stream, meter, output, { signal: options.signal });

  if (totalBytes !== undefined && bytesDone !== totalBytes) {
    throw new StorageError(
      "DOWNLOAD_FAILED",
      `download of ${redactedUrl} ended after ${bytesDone} of ${totalBytes} bytes`,
    );
  }

  await syncFile(temporary);
  return { size: bytesDone, sha256: sha256.digest("hex"), md5: md5.digest("hex") };
}

async function inspect(file: string, redactedUrl: string, signal: AbortSignal | undefined) {
  const archive = await inspectTarball(file, redactedUrl);

  if (archive) {
    return archive;
  }

  let info: Awaited<ReturnType<typeof imageInfo>>;

  try {
    // No backing file is allowed: a downloaded image must not pull in files of this host.
    info = await imageInfo(file, { allowedDirs: [], signal });
  } catch (error) {
    if (error instanceof CommandError) {
      const detail = error.stderr.split("\n")[0] ?? error.message;
      throw new StorageError("CORRUPT_IMAGE", `image from ${redactedUrl} is unreadable: ${detail}`);
    }

    throw error;
  }

  if (info.virtualSize === 0) {
    throw new StorageError("CORRUPT_IMAGE", `image from ${redactedUrl} is empty`);
  }

  if (info.format === "qcow2") {
    await checkImage(file, "qcow2", { signal });
  }

  return { format: info.format, virtualSize: info.virtualSize, actualSize: info.actualSize };
}

function describeFailure(error: unknown, redactedUrl: string, signal: AbortSignal | undefined) {
  if (signal?.aborted) {
    return new StorageError("ABORTED", `download of ${redactedUrl} was aborted`, { cause: error });
  }

  if (error instanceof StorageError) {
    return error;
  }

  const message = error instanceof Error ? error.message : String(error);
  return new StorageError("DOWNLOAD_FAILED", `download of ${redactedUrl} failed: ${message}`, {
    cause: error,
  });
}

function tooLarge(redactedUrl: string, bytes: number, maxBytes: number) {
  return new StorageError(
    "TOO_LARGE",
    `image ${redactedUrl} has at least ${bytes} bytes, more than the maximum of ${maxBytes}`,
  );
}

function assertBaseName(baseName: string) {
  if (!BASE_NAME_PATTERN.test(baseName)) {
    throw new StorageError(
      "INVALID_ARGUMENT",
      `invalid image file name ${JSON.stringify(baseName)}: use letters, digits, _ and -`,
    );
  }
}

async function assertAbsent(file: string) {
  const exists = await access(file).then(
    () => true,
    () => false,
  );

  if (exists) {
    throw new StorageError("ALREADY_EXISTS", `image file ${file} already exists`);
  }
}

async function syncFile(file: string) {
  const handle = await open(file, "r");

  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a rename durable: the new directory entry survives a power loss after this returns. */
export async function syncDirectory(dir: string) {
  await syncFile(dir);
}

/**
 * Recognizes a container root filesystem archive and checks every member, so an unsafe archive
 * is rejected when the image is added. Returns undefined for anything that is not a tar.
 */
async function inspectTarball(file: string, redactedUrl: string) {
  if (!(await looksLikeTar(file))) {
    return undefined;
  }

  try {
    await checkTarball(file, path.join(path.dirname(file), `${path.basename(file)}.check`));
  } catch (error) {
    if (error instanceof ValidationError) {
      throw new StorageError(
        "CORRUPT_IMAGE",
        `archive from ${redactedUrl} is rejected: ${error.message}`,
      );
    }

    throw error;
  } finally {
    await rm(`${file}.check`, { recursive: true, force: true });
  }

  const { size } = await stat(file);
  return { format: "tar" as const, virtualSize: size, actualSize: size };
}
