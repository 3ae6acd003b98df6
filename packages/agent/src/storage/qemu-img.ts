import { realpath, rename, rm } from "node:fs/promises";
import path from "node:path";
import { CommandError, run } from "../exec.js";
import { StorageError } from "./errors.js";

/**
 * Image formats the agent creates and accepts; other formats qemu-img supports are rejected.
 * `tar` is a container root filesystem archive (plain, gzip or xz), which qemu-img never opens.
 */
export type ImageFormat = "qcow2" | "raw" | "tar";

/** Metadata of one image file from `qemu-img info`, read without opening its backing file. */
export interface ImageInfo {
  /** Absolute path of the file. */
  path: string;
  format: ImageFormat;
  /** Disk size presented to the guest, in bytes. */
  virtualSize: number;
  /** Bytes allocated on the host filesystem. */
  actualSize: number;
  /** Absolute path of the backing file, when the image is an overlay. */
  backingFile?: string;
  backingFormat?: ImageFormat;
  /** Cluster size of a qcow2 image, in bytes. */
  clusterSize?: number;
  /** Set when qemu marked a qcow2 image corrupt after a failed write. */
  corrupt: boolean;
}

/** Options of `imageInfo` and `backingChain`. */
export interface InfoOptions {
  /**
   * Directories that backing files and qcow2 external data files may live in. An image whose
   * chain points anywhere else is rejected before that file is opened. Empty means that no
   * backing file or data file is allowed at all, which is right for untrusted downloads.
   */
  allowedDirs: readonly string[];
  /** Format to open the top image as; probed from its content when unset. */
  format?: ImageFormat;
  /** Read an image that a running QEMU has locked (`-U`). The result may be stale. */
  forceShare?: boolean;
  signal?: AbortSignal;
}

/** Result of `qemu-img check` on an image that is not corrupt. */
export interface CheckResult {
  /** Clusters allocated but not referenced: wasted space, harmless to data. */
  leaks: number;
  /** Offset where the image data ends, in bytes. */
  imageEndOffset?: number;
}

const QEMU_IMG = "qemu-img";
const MAX_CHAIN_LENGTH = 256;
/** Limit for commands that copy image data (convert, commit, rebase), which scale with size. */
const DATA_COPY_TIMEOUT_MS = 60 * 60_000;
const SUPPORTED_FORMATS: readonly string[] = ["qcow2", "raw"];

/**
 * Reads one image's metadata with `qemu-img info`. Rejects an image whose backing file or qcow2
 * data file lies outside `options.allowedDirs`, and formats other than qcow2 and raw.
 */
export async function imageInfo(file: string, options: InfoOptions): Promise<ImageInfo> {
  const args = ["info", "--output=json"];

  if (options.format) {
    args.push("-f", options.format);
  }

  if (options.forceShare) {
    args.push("-U");
  }

  const { stdout } = await runQemuImg([...args, file], { signal: options.signal });
  const raw = JSON.parse(stdout) as RawInfo;
  const info = parseInfo(file, raw);

  await assertReferenceAllowed(info.backingFile, "backing file", file, options.allowedDirs);

  const dataFile = raw["format-specific"]?.data?.["data-file"];
  const dataFilePath = dataFile ? path.resolve(path.dirname(file), dataFile) : undefined;
  await assertReferenceAllowed(dataFilePath, "external data file", file, options.allowedDirs);

  return info;
}

/**
 * Walks an image's backing chain one file at a time, top first, checking each reference before
 * the next file is opened. Returns the chain from the top image down to the base.
 */
export async function backingChain(file: string, options: InfoOptions): Promise<ImageInfo[]> {
  const chain = [await imageInfo(file, options)];

  for (let top = chain[0]; top?.backingFile; top = chain[chain.length - 1]) {
    if (chain.length >= MAX_CHAIN_LENGTH) {
      throw new StorageError(
        "UNSUPPORTED_IMAGE",
        `backing chain of ${file} is longer than ${MAX_CHAIN_LENGTH} files; flatten it with convert`,
      );
    }

    const format = top.backingFormat ?? "qcow2";
    chain.push(await imageInfo(top.backingFile, { ...options, format }));
  }

  return chain;
}

/**
 * Runs `qemu-img check` and rejects an image that cannot be opened or has corruptions, with the
 * reason qemu-img printed. Leaked clusters alone are accepted and returned.
 */
export async function checkImage(
  file: string,
  format: ImageFormat,
  options: { signal?: AbortSignal } = {},
): Promise<CheckResult> {
  // qemu-img check exits 2 for corruptions and 3 for leaks; the JSON on stdout shows which.
  const args = ["check", "--output=json", "-f", format, file];
  let result: Awaited<ReturnType<typeof run>>;

  try {
    result = await run(QEMU_IMG, args, { signal: options.signal, okExitCodes: [2, 3] });
  } catch (error) {
    throw new StorageError(
      "CORRUPT_IMAGE",
      `image ${file} failed qemu-img check: ${reason(error)}`,
    );
  }

  if (format === "raw") {
    return { leaks: 0 };
  }

  const report = JSON.parse(result.stdout) as RawCheck;
  const corruptions = report.corruptions ?? 0;
  const checkErrors = report["check-errors"] ?? 0;

  if (corruptions > 0 || checkErrors > 0) {
    const firstError = result.stderr.split("\n").find((line) => line.startsWith("ERROR"));
    throw new StorageError(
      "CORRUPT_IMAGE",
      `image ${file} is corrupt: ${corruptions} corruptions, ${checkErrors} check errors` +
        (firstError ? ` (first: ${firstError})` : ""),
    );
  }

  return { leaks: report.leaks ?? 0, imageEndOffset: report["image-end-offset"] };
}

/** Options of `createImage`. */
export type CreateOptions =
  | { format: ImageFormat; size: number; backingFile?: undefined }
  | {
      format: "qcow2";
      /** Absolute path of the backing file; the overlay records it as given. */
      backingFile: string;
      /** Always explicit, so qemu never probes the backing file's format. */
      backingFormat: ImageFormat;
      /** Virtual size in bytes; the backing file's size when unset. */
      size?: number;
    };

/** Creates an empty image or a qcow2 overlay with `qemu-img create`. Never overwrites a file. */
export async function createImage(file: string, options: CreateOptions): Promise<void> {
  const args = ["create", "-q", "-f", options.format];

  if (options.backingFile !== undefined) {
    assertAbsolute(options.backingFile, "backing file");
    args.push("-b", options.backingFile, "-F", options.backingFormat);
  }

  args.push(file);

  if (options.size !== undefined) {
    assertSize(options.size);
    args.push(String(options.size));
  }

  await assertAbsent(file);
  await runQemuImg(args);
}

/** Options of `convertImage`. */
export interface ConvertOptions {
  sourceFormat: ImageFormat;
  targetFormat: ImageFormat;
  /** Compress qcow2 clusters (slower, smaller; reads stay transparent). */
  compress?: boolean;
  signal?: AbortSignal;
}

/**
 * Copies an image, flattening its backing chain, with `qemu-img convert`. Writes a temporary
 * file beside the target and renames it, so the target appears whole or not at all.
 */
export async function convertImage(source: string, target: string, options: ConvertOptions) {
  const temporary = `${target}.converting-${process.pid}-${Date.now()}`;
  const args = ["convert", "-f", options.sourceFormat, "-O", options.targetFormat];

  if (options.compress) {
    args.push("-c");
  }

  await assertAbsent(target);

  try {
    await runQemuImg([...args, source, temporary], {
      signal: options.signal,
      timeoutMs: DATA_COPY_TIMEOUT_MS,
    });
    await rename(temporary, target);
  } finally {
    await rm(temporary, { force: true });
  }
}

/**
 * Changes an image's virtual size with `qemu-img resize`. Shrinking loses the data past the new
 * end, so it needs `shrink: true`.
 */
export async function resizeImage(
  file: string,
  format: ImageFormat,
  size: number,
  options: { shrink?: boolean } = {},
): Promise<void> {
  assertSize(size);
  const args = ["resize", "-q", "-f", format];

  if (options.shrink) {
    args.push("--shrink");
  }

  await runQemuImg([...args, file, String(size)]);
}

/**
 * Writes an overlay's data into a file of its backing chain with `qemu-img commit`. The overlay
 * is left unchanged (`-d`), because other overlays may still rely on it until the caller
 * deletes it.
 */
export async function commitImage(overlay: string, options: { base?: string } = {}) {
  const args = ["commit", "-q", "-f", "qcow2", "-d"];

  if (options.base !== undefined) {
    args.push("-b", options.base);
  }

  await runQemuImg([...args, overlay], { timeoutMs: DATA_COPY_TIMEOUT_MS });
}

/** Options of `rebaseImage`. */
export interface RebaseOptions {
  /** New backing file, or null to make the overlay standalone. */
  backingFile: string | null;
  backingFormat: ImageFormat;
  /**
   * Only rewrite the reference, copying no data. Correct only when the old and the new backing
   * files have the same content.
   */
  unsafe?: boolean;
}

/**
 * Moves an overlay onto another backing file with `qemu-img rebase`. The default (safe) mode
 * first copies into the overlay every cluster where the old and new backing content differ, so
 * the guest reads the same data afterwards.
 */
export async function rebaseImage(overlay: string, options: RebaseOptions): Promise<void> {
  const args = ["rebase", "-q", "-f", "qcow2"];

  if (options.unsafe) {
    args.push("-u");
  }

  if (options.backingFile === null) {
    args.push("-b", "");
  } else {
    assertAbsolute(options.backingFile, "backing file");
    args.push("-b", options.backingFile, "-F", options.backingFormat);
  }

  await runQemuImg([...args, overlay], { timeoutMs: DATA_COPY_TIMEOUT_MS });
}

/** Space a converted copy of an image needs, from `qemu-img measure`, in bytes. */
export interface Measurement {
  /** Bytes needed for the data in use. */
  required: number;
  /** Bytes needed if every cluster were allocated. */
  fullyAllocated: number;
}

/** Measures how much space `convertImage` to `targetFormat` will need. */
export async function measureImage(
  file: string,
  format: ImageFormat,
  targetFormat: ImageFormat,
): Promise<Measurement> {
  const args = ["measure", "--output=json", "-f", format, "-O", targetFormat, file];
  const { stdout } = await runQemuImg(args);
  const parsed = JSON.parse(stdout) as { required: number; "fully-allocated": number };
  return { required: parsed.required, fullyAllocated: parsed["fully-allocated"] };
}

interface RawInfo {
  format: string;
  "virtual-size": number;
  "actual-size"?: number;
  "cluster-size"?: number;
  "full-backing-filename"?: string;
  "backing-filename"?: string;
  "backing-filename-format"?: string;
  "format-specific"?: { type?: string; data?: { "data-file"?: string; corrupt?: boolean } };
}

interface RawCheck {
  corruptions?: number;
  leaks?: number;
  "check-errors"?: number;
  "image-end-offset"?: number;
}

function parseInfo(file: string, raw: RawInfo): ImageInfo {
  if (!SUPPORTED_FORMATS.includes(raw.format)) {
    throw new StorageError(
      "UNSUPPORTED_IMAGE",
      `image ${file} has format ${raw.format}; only qcow2 and raw are supported, convert it first`,
    );
  }

  const info: ImageInfo = {
    path: path.resolve(file),
    format: raw.format as ImageFormat,
    virtualSize: raw["virtual-size"],
    actualSize: raw["actual-size"] ?? 0,
    corrupt: raw["format-specific"]?.data?.corrupt === true,
  };

  const backing = raw["full-backing-filename"] ?? raw["backing-filename"];

  if (backing) {
    info.backingFile = path.resolve(path.dirname(file), backing);
    info.backingFormat = parseBackingFormat(file, raw["backing-filename-format"]);
  }

  if (raw["cluster-size"] !== undefined) {
    info.clusterSize = raw["cluster-size"];
  }

  return info;
}

function parseBackingFormat(file: string, format: string | undefined): ImageFormat {
  // An overlay without a recorded backing format makes qemu probe the backing file, which lets
  // a raw backing file that looks like qcow2 pull in files of its choosing.
  if (format === undefined || !SUPPORTED_FORMATS.includes(format)) {
    throw new StorageError(
      "UNSUPPORTED_IMAGE",
      `image ${file} has backing format ${format ?? "unset"}; expected qcow2 or raw`,
    );
  }

  return format as ImageFormat;
}

async function assertReferenceAllowed(
  reference: string | undefined,
  what: string,
  file: string,
  allowedDirs: readonly string[],
) {
  if (reference === undefined) {
    return;
  }

  const resolved = await realpath(reference).catch(() => path.resolve(reference));

  for (const dir of allowedDirs) {
    const allowed = await realpath(dir).catch(() => path.resolve(dir));

    if (resolved.startsWith(allowed + path.sep)) {
      return;
    }
  }

  const where = allowedDirs.length ? `outside ${allowedDirs.join(", ")}` : "but none is allowed";
  throw new StorageError(
    "UNSUPPORTED_IMAGE",
    `image ${file} references ${what} ${reference} ${where}`,
  );
}

function assertAbsolute(file: string, what: string) {
  if (!path.isAbsolute(file)) {
    throw new StorageError("INVALID_ARGUMENT", `${what} ${file} is not an absolute path`);
  }
}

function assertSize(size: number) {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new StorageError("INVALID_ARGUMENT", `invalid image size ${size}: expected bytes > 0`);
  }
}

async function assertAbsent(file: string) {
  const exists = await realpath(file).then(
    () => true,
    () => false,
  );

  if (exists) {
    throw new StorageError("ALREADY_EXISTS", `image file ${file} already exists`);
  }
}

function runQemuImg(args: string[], options: { signal?: AbortSignal; timeoutMs?: number } = {}) {
  return run(QEMU_IMG, args, options);
}

function reason(error: unknown) {
  if (error instanceof CommandError) {
    return error.stderr.split("\n").find((line) => line.trim()) ?? error.message;
  }

  return error instanceof Error ? error.message : String(error);
}
