import { randomBytes } from "node:crypto";
import { access, rename, rm } from "node:fs/promises";
import path from "node:path";
import { StorageError } from "./errors.js";
import { imageCacheDir, imageCacheFile } from "./primary.js";
import { createImage } from "./qemu-img.js";
import { SingleFlight } from "./single-flight.js";

const templates = new SingleFlight<string>();

/**
 * Returns the path of an empty qcow2 overlay on a cached image with the given virtual size,
 * `imagecache/template/<uuid>/overlay-<size>.qcow2`, and makes it with `qemu-img create` the
 * first time. A root volume is a copy of this file. qemu-img (checked with 7.2) writes
 * byte-identical files for the same backing file, backing format and size, so the copy equals
 * what `qemu-img create` would make, without starting a process per volume.
 */
export async function overlayTemplate(root: string, imageUuid: string, size: number) {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new StorageError("INVALID_ARGUMENT", `invalid volume size ${size}: expected bytes > 0`);
  }

  const template = path.join(imageCacheDir(root, imageUuid), `overlay-${size}.qcow2`);
  const exists = await access(template).then(
    () => true,
    () => false,
  );

  if (exists) {
    return template;
  }

  return templates.run(template, () => createTemplate(root, imageUuid, size, template));
}

/** Creates the template under a temporary name and renames it, so it appears whole or not at all. */
async function createTemplate(root: string, imageUuid: string, size: number, template: string) {
  const temporary = `${template}.creating-${randomBytes(6).toString("hex")}`;

  try {
    await createImage(temporary, {
      format: "qcow2",
      backingFile: imageCacheFile(root, imageUuid),
      backingFormat: "qcow2",
      size,
    });
    await rename(temporary, template);
    return template;
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
