import { readFile } from "node:fs/promises";
import { run } from "../exec.js";
import { ValidationError } from "../validate.js";

/** Mounts `target` as an overlay of a read-only image root and the container's own upper layer. */
export async function mountOverlay(lower: string, upper: string, work: string, target: string) {
  for (const [field, path] of Object.entries({ lower, upper, work })) {
    // Commas and colons separate overlay options and lower layers.
    if (/[,:\n\0]/.test(path)) {
      throw new ValidationError(`invalid overlay ${field} directory ${path}: contains , or :`);
    }
  }

  await run("mount", [
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
    target,
  ]);
}

/** Unmounts an overlay; a path that is not a mount point counts as unmounted. */
export async function unmountOverlay(target: string) {
  if (await isMountPoint(target)) {
    await run("umount", [target]);
  }
}

/** Checks /proc/self/mountinfo for a mount at exactly that path. */
export async function isMountPoint(path: string) {
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8");
  // The mount point is the fifth field, with spaces and backslashes escaped as octal.
  return mountinfo
    .split("\n")
    .some(
      (line) =>
        line
          .split(" ")[4]
          ?.replace(/\\(\d{3})/g, (_, octal: string) =>
            String.fromCharCode(Number.parseInt(octal, 8)),
          ) === path,
    );
}
