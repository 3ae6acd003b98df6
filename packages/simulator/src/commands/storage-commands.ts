import { createHash, randomBytes } from "node:crypto";
import type { SimFile, SimImage, SimPrimaryFiles, SimVolume } from "../state.js";
import { usedBytes } from "../state.js";
import { type Body, type Command, type CommandContext, CommandError, field } from "./context.js";

const MiB = 1024 * 1024;

/** Sizes of every simulated image: nothing is downloaded, so the URL cannot tell them. */
export const IMAGE_VIRTUAL_SIZE = 1024 * MiB;
export const IMAGE_ACTUAL_SIZE = 64 * MiB;

/** Disk space a new qcow2 overlay takes before the guest writes to it. */
const OVERLAY_ACTUAL_SIZE = 196_608;

function backupStorageOf(context: CommandContext, path: string) {
  if (!context.backupStorage) {
    throw new CommandError(`${path} is an image store command, but it was sent to a host`);
  }

  return context.backupStorage;
}

function volumeRef(body: Body) {
  const volume = (body.volume ?? {}) as Body;
  return {
    type: field(volume, "type"),
    accountUuid: field(volume, "accountUuid"),
    volumeUuid: field(volume, "volumeUuid"),
  };
}

function volumeOf(files: SimPrimaryFiles, body: Body, root: string) {
  const ref = volumeRef(body);
  const volume = files.volumes.get(ref.volumeUuid);

  if (!volume) {
    throw new CommandError(`volume ${ref.volumeUuid} has no files under ${root}`);
  }

  return volume;
}

function topOf(volume: SimVolume): SimFile {
  return volume.files[volume.files.length - 1]!;
}

function volumeDir(
  root: string,
  volume: { type: string; accountUuid: string; volumeUuid: string },
) {
  const top = volume.type === "Root" ? "rootVolumes" : "dataVolumes";
  return `${root}/${top}/acct-${volume.accountUuid}/vol-${volume.volumeUuid}`;
}

function newFile(
  dir: string,
  fileUuid: string,
  virtualSize: number,
  backingFile?: string,
): SimFile {
  return {
    fileUuid,
    path: `${dir}/${fileUuid}.qcow2`,
    virtualSize,
    actualSize: OVERLAY_ACTUAL_SIZE,
    ...(backingFile ? { backingFile } : {}),
  };
}

function fileReply(file: SimFile) {
  return file.backingFile ? { ...file, backingFormat: "qcow2" } : { ...file };
}

function cachePath(root: string, imageUuid: string) {
  return `${root}/imagecache/template/${imageUuid}/${imageUuid}.qcow2`;
}

function primaryCapacity(context: CommandContext, root: string) {
  const { total, available } = context.primaryCapacity(root);
  const used = usedBytes(context.primaryFiles(root));
  return {
    totalPhysicalCapacity: total,
    availablePhysicalCapacity: Math.max(0, available - used),
    usedPhysicalCapacity: used,
  };
}

function imageStoreCapacity(context: CommandContext, path: string) {
  const store = backupStorageOf(context, path);
  let used = 0;

  for (const image of store.images.values()) {
    used += image.actualSize;
  }

  return {
    totalCapacity: store.totalCapacity,
    availableCapacity: Math.max(0, store.availableCapacity - used),
  };
}

function download(context: CommandContext, body: Body) {
  const store = backupStorageOf(context, "/imagestore/download");
  const imageUuid = field(body, "imageUuid");
  const url = field(body, "url");
  const existing = store.images.get(imageUuid);

  if (existing) {
    return { ...existing, size: existing.actualSize };
  }

  const free = imageStoreCapacity(context, "/imagestore/download").availableCapacity;

  if (free < IMAGE_ACTUAL_SIZE) {
    throw new CommandError(
      `image store ${store.uuid} has ${free} bytes free; image ${imageUuid} needs ${IMAGE_ACTUAL_SIZE}`,
    );
  }

  const image = simulatedImage(imageUuid, url);
  store.images.set(imageUuid, image);
  return { ...image, size: image.actualSize };
}

/**
 * Builds the image a simulated download of `url` stores. Its digests derive from the URL, so a
 * download of the same URL always reports the same image.
 */
export function simulatedImage(imageUuid: string, url: string): SimImage {
  const digest = (algorithm: string) => createHash(algorithm).update(url).digest("hex");
  return {
    imageUuid,
    format: /\.raw$/i.test(new URL(url).pathname) ? "raw" : "qcow2",
    virtualSize: IMAGE_VIRTUAL_SIZE,
    actualSize: IMAGE_ACTUAL_SIZE,
    sha256: digest("sha256"),
    md5: digest("md5"),
    sourceUrl: url.replace(/\?.*$/, ""),
    createdAt: new Date().toISOString(),
  };
}

function fillCache(context: CommandContext, body: Body) {
  const root = field(body, "root");
  const imageUuid = field(body, "imageUuid");
  const files = context.primaryFiles(root);
  const image = files.imageCache.get(imageUuid) ?? context.findImage(imageUuid);

  if (!image) {
    throw new CommandError(`image ${imageUuid} is on no simulated backup storage`);
  }

  files.imageCache.set(imageUuid, image);
  return {
    imageUuid,
    path: cachePath(root, imageUuid),
    virtualSize: image.virtualSize,
    actualSize: image.actualSize,
    sourceSha256: image.sha256,
    sourceMd5: image.md5,
    sourceFormat: image.format,
  };
}

/**
 * Deletes the named cache entries that no simulated volume file has as its backing file, as the
 * agent's `/storage/imagecache/gc` does.
 * NOTE: the grace period is not simulated; the management node's own grace check still applies.
 */
function collectCacheGarbage(context: CommandContext, body: Body) {
  const root = field(body, "root");
  const files = context.primaryFiles(root);
  const imageUuids = Array.isArray(body.imageUuids) ? body.imageUuids.map(String) : [];
  const backingFiles = new Set(
    [...files.volumes.values()].flatMap((volume) => volume.files.map((file) => file.backingFile)),
  );
  const deleted: string[] = [];
  const kept: { imageUuid: string; reason: string }[] = [];

  for (const imageUuid of imageUuids) {
    if (backingFiles.has(cachePath(root, imageUuid))) {
      kept.push({ imageUuid, reason: "backing file of a simulated volume" });
    } else {
      files.imageCache.delete(imageUuid);
      deleted.push(imageUuid);
    }
  }

  return { deleted, kept };
}

function createVolume(context: CommandContext, body: Body, type: "Root" | "Data") {
  const root = field(body, "root");
  const files = context.primaryFiles(root);
  const ref = {
    type,
    accountUuid: field(body, "accountUuid"),
    volumeUuid: field(body, "volumeUuid"),
  };
  const existing = files.volumes.get(ref.volumeUuid);

  if (existing) {
    return fileReply(topOf(existing));
  }

  let size = Number(body.size ?? 0);
  let backing: string | undefined;

  if (type === "Root") {
    const imageUuid = field(body, "imageUuid");
    const image = files.imageCache.get(imageUuid);

    if (!image) {
      throw new CommandError(
        `image ${imageUuid} is not in the image cache of ${root}; fill it first`,
      );
    }

    size = Math.max(size, image.virtualSize);
    backing = cachePath(root, imageUuid);
  }

  const volume: SimVolume = {
    ...ref,
    files: [newFile(volumeDir(root, ref), ref.volumeUuid, size, backing)],
  };
  files.volumes.set(ref.volumeUuid, volume);
  return fileReply(topOf(volume));
}

function takeSnapshot(context: CommandContext, body: Body) {
  const root = field(body, "root");
  const volume = volumeOf(context.primaryFiles(root), body, root);
  const top = topOf(volume);

  if (top.fileUuid !== field(body, "topFileUuid")) {
    throw new CommandError(
      `volume ${volume.volumeUuid}: the top file is ${top.fileUuid}, not ${String(body.topFileUuid)}`,
    );
  }

  const newTop = newFile(
    volumeDir(root, volume),
    field(body, "newTopFileUuid"),
    top.virtualSize,
    top.path,
  );
  volume.files.push(newTop);
  return { snapshot: fileReply(top), newTop: fileReply(newTop) };
}

function revertSnapshot(context: CommandContext, body: Body) {
  const root = field(body, "root");
  const volume = volumeOf(context.primaryFiles(root), body, root);
  const snapshot = volume.files.find((file) => file.fileUuid === field(body, "snapshotFileUuid"));

  if (!snapshot) {
    throw new CommandError(
      `volume ${volume.volumeUuid} has no file ${String(body.snapshotFileUuid)}`,
    );
  }

  const current = field(body, "currentTopFileUuid");
  volume.files = volume.files.filter((file) => file.fileUuid !== current);
  const newTop = newFile(
    volumeDir(root, volume),
    field(body, "newTopFileUuid"),
    snapshot.virtualSize,
    snapshot.path,
  );
  volume.files.push(newTop);
  return fileReply(newTop);
}

function deleteSnapshot(context: CommandContext, body: Body) {
  const root = field(body, "root");
  const volume = volumeOf(context.primaryFiles(root), body, root);
  const index = volume.files.findIndex((file) => file.fileUuid === field(body, "snapshotFileUuid"));

  if (index < 0) {
    return { rebasedFileUuids: [] };
  }

  const [removed] = volume.files.splice(index, 1);
  const child = volume.files[index];

  if (child) {
    child.backingFile = removed?.backingFile;
  }

  return { rebasedFileUuids: child ? [child.fileUuid] : [] };
}

/** The image store and primary storage commands, over files kept in memory. */
export const storageCommands: Record<string, Command> = {
  "/imagestore/init": (context) => imageStoreCapacity(context, "/imagestore/init"),
  "/imagestore/capacity": (context) => imageStoreCapacity(context, "/imagestore/capacity"),
  "/imagestore/download": download,
  "/imagestore/image/get": (context, body) => {
    const store = backupStorageOf(context, "/imagestore/image/get");
    const image = store.images.get(field(body, "imageUuid"));

    if (!image) {
      throw new CommandError(`image ${String(body.imageUuid)} is not in image store ${store.uuid}`);
    }

    return { ...image, size: image.actualSize };
  },
  "/imagestore/image/delete": (context, body) => {
    backupStorageOf(context, "/imagestore/image/delete").images.delete(field(body, "imageUuid"));
    return {};
  },
  "/storage/primary/init": (context, body) => primaryCapacity(context, field(body, "root")),
  "/storage/primary/capacity": (context, body) => primaryCapacity(context, field(body, "root")),
  "/storage/imagecache/fill": fillCache,
  "/storage/imagecache/gc": collectCacheGarbage,
  "/storage/imagecache/delete": (context, body) => {
    context.primaryFiles(field(body, "root")).imageCache.delete(field(body, "imageUuid"));
    return {};
  },
  "/storage/volume/root/create": (context, body) => createVolume(context, body, "Root"),
  "/storage/volume/data/create": (context, body) => createVolume(context, body, "Data"),
  "/storage/volume/delete": (context, body) => {
    const ref = volumeRef(body);
    context.primaryFiles(field(body, "root")).volumes.delete(ref.volumeUuid);
    return {};
  },
  "/storage/volume/files": (context, body) => {
    const root = field(body, "root");
    const volume = volumeOf(context.primaryFiles(root), body, root);
    return { files: volume.files.map(fileReply) };
  },
  "/storage/snapshot/take": takeSnapshot,
  // An online snapshot changes the same files; a simulated VM has no QEMU to switch over.
  "/vm/volume/snapshot": takeSnapshot,
  "/storage/snapshot/revert": revertSnapshot,
  "/storage/snapshot/delete": deleteSnapshot,
  "/storage/smp/marker/write": (context, body) => {
    const token = randomBytes(16).toString("hex");
    context.markers.set(field(body, "markerUuid"), token);
    return { token };
  },
  "/storage/smp/marker/verify": (context, body) => ({
    verified: context.markers.get(field(body, "markerUuid")) === body.token,
  }),
  "/storage/smp/marker/remove": (context, body) => {
    context.markers.delete(field(body, "markerUuid"));
    return {};
  },
  "/storage/task/progress": () => ({ running: false }),
  "/storage/task/cancel": () => ({ cancelled: false }),
};
