import { open } from "node:fs/promises";
import { posix } from "node:path";
import { ValidationError } from "../validate.js";

/** An entry of a tar archive, with the names that GNU and PAX extension headers set. */
export interface TarEntry {
  /** Member name as stored, after PAX and GNU long-name headers. */
  name: string;
  /** Type flag: `0` file, `1` hard link, `2` symlink, `5` directory, and others. */
  type: string;
  linkName: string;
  size: number;
}

/** A tar archive that must not be unpacked, with the member that breaks the rules. */
export class UnsafeTarError extends ValidationError {
  constructor(message: string) {
    super(message);
    this.name = "UnsafeTarError";
  }
}

const BLOCK = 512;
// Long names and PAX records are read into memory, so their size is capped.
const MAX_EXTENSION_BYTES = 1024 * 1024;
const MEMBER_TYPES: Record<string, string> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hard link",
  "2": "symlink",
  "5": "directory",
};

/**
 * Reads the members of an uncompressed tar file (ustar, GNU long names, PAX) without unpacking
 * it. Only the headers and the extension records are read, so a large archive costs little.
 */
export async function readTarEntries(path: string): Promise<TarEntry[]> {
  const file = await open(path, "r");

  try {
    const entries: TarEntry[] = [];
    const size = (await file.stat()).size;
    let offset = 0;
    let pending: Partial<Pick<TarEntry, "name" | "linkName">> = {};

    while (offset + BLOCK <= size) {
      const header = Buffer.alloc(BLOCK);
      await file.read(header, 0, BLOCK, offset);

      if (header.every((byte) => byte === 0)) {
        return entries;
      }

      checkChecksum(header, offset);
      const entry = parseHeader(header);
      const dataOffset = offset + BLOCK;
      offset = dataOffset + Math.ceil(entry.size / BLOCK) * BLOCK;

      if (offset > size) {
        throw new UnsafeTarError(`tar member ${JSON.stringify(entry.name)} is truncated`);
      }

      if (entry.type === "L" || entry.type === "K" || entry.type === "x" || entry.type === "g") {
        const data = await readExtension(file, dataOffset, entry);
        pending = { ...pending, ...extensionNames(entry.type, data) };
        continue;
      }

      entries.push({
        ...entry,
        name: pending.name ?? entry.name,
        linkName: pending.linkName ?? entry.linkName,
      });
      pending = {};
    }

    throw new UnsafeTarError("tar archive has no end-of-archive marker: the file is truncated");
  } finally {
    await file.close();
  }
}

/**
 * Checks every member before anything is unpacked: only files, directories, symlinks and hard
 * links; no absolute names, no `..`, no member below or in place of a symlink, no hard link
 * outside the archive and no relative symlink that climbs above the root. Absolute symlink
 * targets are allowed because they resolve inside the container, and the agent never follows
 * them.
 */
export function checkTarEntries(entries: TarEntry[]) {
  const symlinks = new Set<string>();

  for (const entry of entries) {
    const name = memberPath(entry.name, "member");
    const kind = MEMBER_TYPES[entry.type];

    if (!kind) {
      throw new UnsafeTarError(
        `tar member ${JSON.stringify(entry.name)} has type ${JSON.stringify(entry.type)}: only files, directories, symlinks and hard links are allowed (no device nodes or FIFOs)`,
      );
    }

    checkNotBelowSymlink(name, entry.name, symlinks);

    // How tar replaces an existing symlink differs between versions and options, so it is refused.
    if (symlinks.has(name)) {
      throw new UnsafeTarError(
        `tar member ${JSON.stringify(entry.name)} replaces an earlier symlink of the same name`,
      );
    }

    if (kind === "hard link") {
      const target = memberPath(entry.linkName, `hard link target of ${entry.name}`);
      checkNotBelowSymlink(target, entry.linkName, symlinks);
    }

    if (kind === "symlink") {
      checkSymlinkTarget(name, entry);
      symlinks.add(name);
    }
  }
}

/** Normalizes a member name relative to the root; rejects absolute names and `..`. */
function memberPath(raw: string, what: string) {
  if (raw.includes("\0") || raw.startsWith("/")) {
    throw new UnsafeTarError(`${what} ${JSON.stringify(raw)} is an absolute path or contains NUL`);
  }

  const parts = raw.split("/").filter((part) => part !== "" && part !== ".");

  if (parts.includes("..")) {
    throw new UnsafeTarError(`${what} ${JSON.stringify(raw)} contains a .. component`);
  }

  return parts.join("/");
}

function checkNotBelowSymlink(name: string, raw: string, symlinks: Set<string>) {
  const parts = name.split("/");

  for (let length = 1; length < parts.length; length++) {
    const parent = parts.slice(0, length).join("/");

    if (symlinks.has(parent)) {
      throw new UnsafeTarError(
        `tar member ${JSON.stringify(raw)} lies below the symlink ${JSON.stringify(parent)}, so unpacking it could write outside the image folder`,
      );
    }
  }
}

function checkSymlinkTarget(name: string, entry: TarEntry) {
  if (entry.linkName === "" || entry.linkName.includes("\0")) {
    throw new UnsafeTarError(
      `symlink ${JSON.stringify(entry.name)} has an empty or invalid target`,
    );
  }

  if (entry.linkName.startsWith("/")) {
    return;
  }

  if (climbsAboveRoot(posix.dirname(name), entry.linkName)) {
    throw new UnsafeTarError(
      `symlink ${JSON.stringify(entry.name)} -> ${JSON.stringify(entry.linkName)} points above the image root`,
    );
  }
}

/** Walks a relative target from a directory and reports whether any step leaves the root. */
function climbsAboveRoot(directory: string, target: string) {
  let depth = directory === "." ? 0 : directory.split("/").length;

  for (const part of target.split("/")) {
    if (part === "..") {
      depth--;
    } else if (part !== "" && part !== ".") {
      depth++;
    }

    if (depth < 0) {
      return true;
    }
  }

  return false;
}

function checkChecksum(header: Buffer, offset: number) {
  const stored = parseOctal(header.subarray(148, 156));
  let sum = 0;

  for (let index = 0; index < BLOCK; index++) {
    sum += index >= 148 && index < 156 ? 0x20 : header[index]!;
  }

  if (stored !== sum) {
    throw new UnsafeTarError(
      `tar header at byte ${offset} has a bad checksum: the file is not a tar archive or is corrupt`,
    );
  }
}

function parseHeader(header: Buffer): TarEntry {
  const name = cString(header.subarray(0, 100));
  const prefix =
    header.subarray(257, 262).toString("latin1") === "ustar"
      ? cString(header.subarray(345, 500))
      : "";

  return {
    name: prefix ? `${prefix}/${name}` : name,
    type: String.fromCharCode(header[156]!),
    linkName: cString(header.subarray(157, 257)),
    size: parseSize(header.subarray(124, 136)),
  };
}

function parseSize(field: Buffer) {
  // GNU tar stores sizes of 8 GiB and more in base 256, flagged by the high bit.
  if ((field[0]! & 0x80) !== 0) {
    let value = field[0]! & 0x7f;

    for (const byte of field.subarray(1)) {
      value = value * 256 + byte;
    }

    return value;
  }

  return parseOctal(field);
}

function parseOctal(field: Buffer) {
  const text = cString(field).trim();
  return text === "" ? 0 : Number.parseInt(text, 8);
}

function cString(field: Buffer) {
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString("utf8");
}

async function readExtension(
  file: Awaited<ReturnType<typeof open>>,
  offset: number,
  entry: TarEntry,
) {
  if (entry.size > MAX_EXTENSION_BYTES) {
    throw new UnsafeTarError(
      `tar extension header of ${entry.size} bytes is larger than ${MAX_EXTENSION_BYTES}`,
    );
  }

  const data = Buffer.alloc(entry.size);
  await file.read(data, 0, entry.size, offset);
  return data;
}

function extensionNames(type: string, data: Buffer): Partial<Pick<TarEntry, "name" | "linkName">> {
  if (type === "L") {
    return { name: cString(data) };
  }

  if (type === "K") {
    return { linkName: cString(data) };
  }

  const records = paxRecords(data);

  // A path in a global PAX header would apply to later members in ways tar versions differ on.
  if (type === "g") {
    if (records.some(([key]) => key === "path" || key === "linkpath")) {
      throw new UnsafeTarError("tar archive has a global PAX header that sets a path");
    }

    return {};
  }

  const names: Partial<Pick<TarEntry, "name" | "linkName">> = {};

  for (const [key, value] of records) {
    if (key === "path") {
      names.name = value;
    } else if (key === "linkpath") {
      names.linkName = value;
    }
  }

  return names;
}

/** Parses PAX records of the form `<length> <key>=<value>\n`. */
function paxRecords(data: Buffer): Array<[string, string]> {
  const records: Array<[string, string]> = [];
  let offset = 0;

  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    const length = Number(data.subarray(offset, space).toString("latin1"));

    if (space === -1 || !Number.isInteger(length) || length <= 0 || offset + length > data.length) {
      throw new UnsafeTarError("tar archive has a malformed PAX extended header");
    }

    const record = data.subarray(space + 1, offset + length - 1).toString("utf8");
    const equals = record.indexOf("=");
    records.push([record.slice(0, equals), record.slice(equals + 1)]);
    offset += length;
  }

  return records;
}
