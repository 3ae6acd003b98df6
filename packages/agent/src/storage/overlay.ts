import { createImage, type ImageFormat, type ImageInfo, imageInfo } from "./qemu-img.js";

/**
 * Starts a qcow2 overlay `overlay` on `base`, offline, and returns the overlay's info. This one
 * step serves two purposes: a snapshot freezes a volume's top file by continuing in a new
 * overlay on it, and a revert starts a fresh overlay on the chosen snapshot file. `base` must
 * not be written afterwards. qemu-img fails while a running QEMU has `base` locked, so this never
 * runs under a live guest. `baseFormat` defaults to qcow2 and is never probed, because a guest
 * can write a qcow2 header into a raw disk.
 */
export async function createOverlay(
  base: string,
  overlay: string,
  options: { allowedDirs: readonly string[]; baseFormat?: ImageFormat; size?: number },
): Promise<ImageInfo> {
  const { allowedDirs } = options;
  const frozen = await imageInfo(base, { allowedDirs, format: options.baseFormat ?? "qcow2" });

  await createImage(overlay, {
    format: "qcow2",
    backingFile: frozen.path,
    backingFormat: frozen.format,
    size: options.size,
  });

  return imageInfo(overlay, { allowedDirs, format: "qcow2" });
}
