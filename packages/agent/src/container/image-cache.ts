import { spawn } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { run } from "../exec.js";
import { assertOptionPath, assertUuid, ValidationError } from "../validate.js";
import { checkTarEntries, readTarEntries } from "./tar.js";

/** Compression of a root filesystem archive, found from its first bytes. */
export type TarCompression = "none" | "gzip" | "xz";

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const UNPACK_TIMEOUT_MS = 10 * 60_000;

/**
 * Unpacks root filesystem tarballs once per host into `<cacheDir>/<imageUuid>/rootfs`, which
 * containers use read-only as the lower layer of their overlay. A folder is only renamed into
 * place once it is complete, so a cut-short unpack is never used.
 */
export class ImageCache {
  readonly #cacheDir: string;
  readonly #unpacking = new Map<string, Promise<string>>();

  constructor(cacheDir: string) {
    assertOptionPath(cacheDir, "image cache directory");
    this.#cacheDir = cacheDir;
  }

  /** Returns the unpacked root of an image, unpacking the tarball first if needed. */
  rootfs(imageUuid: string, tarPath: string): Promise<string> {
    assertUuid(imageUuid, "rootfs.imageUuid");
    assertOptionPath(tarPath, "rootfs.tarPath");

    let unpacking = this.#unpacking.get(imageUuid);

    if (!unpacking) {
      unpacking = this.#ensure(imageUuid, tarPath).finally(() => this.#unpacking.delete(imageUuid));
      this.#unpacking.set(imageUuid, unpacking);
    }

    return unpacking;
  }

  /** Removes an image's unpacked root; containers still running on it keep their mounts. */
  async remove(imageUuid: string) {
    assertUuid(imageUuid, "imageUuid");
    await rm(join(this.#cacheDir, imageUuid), { recursive: true, force: true });
  }

  async #ensure(imageUuid: string, tarPath: string) {
    const folder = join(this.#cacheDir, imageUuid);
    const rootfs = join(folder, "rootfs");

    if (await isDirectory(rootfs)) {
      return rootfs;
    }

    const partial = `${folder}.partial`;
    await rm(partial, { recursive: true, force: true });
    await mkdir(join(partial, "rootfs"), { recursive: true, mode: 0o700 });

    try {
      await unpackChecked(tarPath, partial);
      await rename(partial, folder);
      return rootfs;
    } catch (error) {
      await rm(partial, { recursive: true, force: true });
      throw error;
    }
  }
}

/**
 * Decompresses an archive into `<folder>/image.tar`, checks every member, then unpacks it into
 * `<folder>/rootfs`. The checked copy is the one unpacked, so the source cannot change between
 * the check and the unpack.
 */
export async function unpackChecked(tarPath: string, folder: string) {
  const plain = join(folder, "image.tar");
  await decompress(tarPath, plain);
  checkTarEntries(await readTarEntries(plain));

  // GNU tar refuses `..` and absolute names by itself too; the check above is the real guard.
  await run(
    "tar",
    [
      "--extract",
      "--file",
      plain,
      "--directory",
      join(folder, "rootfs"),
      "--numeric-owner",
      "--same-permissions",
      "--no-overwrite-dir",
    ],
    { timeoutMs: UNPACK_TIMEOUT_MS },
  );
  await rm(plain);
}

/** Validates a root filesystem archive without unpacking it; returns its compression. */
export async function checkTarball(tarPath: string, scratchDir: string): Promise<TarCompression> {
  await mkdir(scratchDir, { recursive: true, mode: 0o700 });
  const plain = join(scratchDir, "check.tar");

  try {
    const compression = await decompress(tarPath, plain);
    checkTarEntries(await readTarEntries(plain));
    return compression;
  } finally {
    await rm(plain, { force: true });
  }
}

/** Writes the uncompressed tar of `source` to `target`. */
export async function decompress(source: string, target: string): Promise<TarCompression> {
  const compression = await detectCompression(source);

  if (compression === "gzip") {
    await pipeline(createReadStream(source), createGunzip(), createWriteStream(target));
  } else if (compression === "xz") {
    await unxz(source, target);
  } else {
    await pipeline(createReadStream(source), createWriteStream(target));
  }

  return compression;
}

/** Finds the compression from the magic bytes; a plain tar is recognized by its checksum later. */
export async function detectCompression(path: string): Promise<TarCompression> {
  const file = await open(path, "r").catch((error: NodeJS.ErrnoException) => {
    throw new ValidationError(
      `failed to open root filesystem archive ${path}: ${error.code ?? error.message}`,
    );
  });

  try {
    const head = Buffer.alloc(6);
    await file.read(head, 0, 6, 0);

    if (head.subarray(0, 2).equals(GZIP_MAGIC)) {
      return "gzip";
    }

    return head.equals(XZ_MAGIC) ? "xz" : "none";
  } finally {
    await file.close();
  }
}

/**
 * Checks whether a file is a tar archive: gzip or xz magic bytes, or the `ustar` magic of an
 * uncompressed one. A compressed file that is not a tar fails the member check later.
 */
export async function looksLikeTar(path: string) {
  if ((await detectCompression(path)) !== "none") {
    return true;
  }

  const file = await open(path, "r");

  try {
    const magic = Buffer.alloc(5);
    await file.read(magic, 0, 5, 257);
    return magic.toString("latin1") === "ustar";
  } finally {
    await file.close();
  }
}

/** Runs `xz` with its output going straight to a file, since run() buffers output as text. */
async function unxz(source: string, target: string) {
  const output = await open(target, "w", 0o600);

  try {
    const child = spawn("xz", ["--decompress", "--stdout", "--", source], {
      stdio: ["ignore", output.fd, "pipe"],
      env: { ...process.env, LC_ALL: "C" },
    });
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });

    const code = await new Promise<number | null>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", resolve);
    });

    if (code !== 0) {
      throw new ValidationError(
        `xz failed to decompress ${source} (exit code ${code}): ${stderr.trim().slice(-500)}`,
      );
    }
  } finally {
    await output.close();
  }
}

async function isDirectory(path: string) {
  return (await stat(path).catch(() => undefined))?.isDirectory() === true;
}
