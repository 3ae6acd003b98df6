import { randomBytes } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { syncDirectory } from "./download.js";
import { assertUuid } from "./uuid.js";

/**
 * Writes a marker file with a random token under a shared mount point and returns the token.
 * When `verifySmpMarker` on another host reads the same token at the same path, both hosts see
 * one filesystem, which a shared mount point primary storage requires.
 */
export async function writeSmpMarker(mountPath: string, markerUuid: string): Promise<string> {
  const token = randomBytes(16).toString("hex");
  await writeFile(markerFile(mountPath, markerUuid), token, { flag: "wx", flush: true });
  await syncDirectory(mountPath);
  return token;
}

/** Returns whether the marker under `mountPath` contains `token`; false when it is missing. */
export async function verifySmpMarker(
  mountPath: string,
  markerUuid: string,
  token: string,
): Promise<boolean> {
  // NOTE: a network filesystem may cache a missing file briefly, so the caller retries false.
  const content = await readFile(markerFile(mountPath, markerUuid), "utf8").catch(() => undefined);
  return content === token;
}

/** Removes the marker once every host has verified it. Removing twice succeeds. */
export async function removeSmpMarker(mountPath: string, markerUuid: string): Promise<void> {
  await rm(markerFile(mountPath, markerUuid), { force: true });
}

function markerFile(mountPath: string, markerUuid: string) {
  assertUuid(markerUuid, "marker UUID");
  return path.join(mountPath, `.tstack-smp-marker-${markerUuid}`);
}
