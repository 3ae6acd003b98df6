import { randomBytes } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { syncDirectory } from "./download.js";

/**
 * Writes a JSON file atomically and durably: a temporary file is flushed, renamed over the
 * target and the directory synced, so readers see the old file or the whole new one.
 */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const temporary = `${file}.${randomBytes(6).toString("hex")}`;
  await writeFile(temporary, `${JSON.stringify(value, null, 2)}\n`, { flush: true });
  await rename(temporary, file);
  await syncDirectory(path.dirname(file));
}

/** Reads a JSON file, or returns undefined when it does not exist. */
export async function readJsonIfExists<T>(file: string): Promise<T | undefined> {
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") {
      return undefined;
    }

    throw error;
  });

  return text === undefined ? undefined : (JSON.parse(text) as T);
}
