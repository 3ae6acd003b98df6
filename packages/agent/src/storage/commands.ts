import path from "node:path";
import type { DownloadProgress } from "./download.js";
import { StorageError } from "./errors.js";
import { type CachedImage, deleteCachedImage, fillImageCache } from "./image-cache.js";
import { collectImageCacheGarbage, type ImageCacheGcResult } from "./image-cache-gc.js";
import {
  addImage,
  deleteImage,
  getImage,
  imageStoreCapacity,
  initImageStore,
  type StoredImage,
} from "./image-store.js";
import { expectUpload } from "./image-upload.js";
import {
  initPrimaryStorage,
  type PrimaryStorageCapacity,
  primaryStorageCapacity,
  type VolumeRef,
} from "./primary.js";
import { removeSmpMarker, verifySmpMarker, writeSmpMarker } from "./smp-marker.js";
import type { FilesystemCapacity } from "./statfs.js";
import type { UrlPolicy } from "./url-policy.js";
import { exportVolume } from "./volume-export.js";
import {
  deleteVolumeSnapshot,
  listVolumeFiles,
  revertVolumeSnapshot,
  takeVolumeSnapshot,
} from "./volume-snapshots.js";
import {
  createDataVolume,
  createRootVolume,
  deleteVolume,
  growVolume,
  type VolumeFileInfo,
} from "./volumes.js";

/** Body of every command on one storage: its directory on this host. */
export interface StorageRootCommand {
  /** Absolute path of the image store or primary storage directory (the mount path for SMP). */
  root: string;
}

/** Body of `/imagestore/download`: add an image to an image store from a URL. */
export interface ImageStoreDownloadCommand extends StorageRootCommand {
  imageUuid: string;
  url: string;
  maxBytes?: number;
}

/** Body of `/imagestore/upload`: wait for an image's bytes to arrive by HTTP PUT. */
export interface ImageStoreUploadCommand extends StorageRootCommand {
  imageUuid: string;
  maxBytes?: number;
}

/** Body of `/imagestore/image/get` and `/imagestore/image/delete`. */
export interface ImageStoreImageCommand extends StorageRootCommand {
  imageUuid: string;
}

/** Body of `/storage/imagecache/fill`: copy an image into a primary storage's cache. */
export interface ImageCacheFillCommand extends StorageRootCommand {
  imageUuid: string;
  /** Signed image store URL (see `signedImageUrl`) or a file URL under an allowed prefix. */
  url: string;
  sha256?: string;
  md5?: string;
  maxBytes?: number;
}

/** Body of `/storage/imagecache/delete`. */
export interface ImageCacheDeleteCommand extends StorageRootCommand {
  imageUuid: string;
}

/** Body of `/storage/imagecache/gc`: delete the named cache entries that nothing uses. */
export interface ImageCacheGcCommand extends StorageRootCommand {
  /** Entries that no volume or CD-ROM in the management node's database uses. */
  imageUuids: string[];
  /** Seconds after its last fill during which an entry is kept anyway. */
  graceSeconds: number;
}

/** Body of `/storage/volume/root/create`. */
export interface CreateRootVolumeCommand extends StorageRootCommand {
  accountUuid: string;
  volumeUuid: string;
  imageUuid: string;
  /** Virtual size in bytes; the image's size when unset. */
  size?: number;
}

/** Body of `/storage/volume/data/create`. */
export interface CreateDataVolumeCommand extends StorageRootCommand {
  accountUuid: string;
  volumeUuid: string;
  /** Virtual size in bytes. */
  size: number;
}

/** Body of `/storage/volume/delete` and `/storage/volume/files`. */
export interface VolumeCommand extends StorageRootCommand {
  volume: VolumeRef;
}

/** Body of `/storage/volume/resize`: grow a volume's top file while no QEMU uses it. */
export interface ResizeVolumeCommand extends VolumeCommand {
  topFileUuid: string;
  /** New virtual size in bytes, not smaller than the current one. */
  size: number;
}

/** Body of `/storage/volume/export`: flatten a volume into an image and upload it. */
export interface ExportVolumeCommand extends VolumeCommand {
  topFileUuid: string;
  /** Signed upload URL of the image store that receives the image. */
  uploadUrl: string;
}

/** Body of `/storage/snapshot/take`. */
export interface TakeSnapshotCommand extends VolumeCommand {
  topFileUuid: string;
  newTopFileUuid: string;
}

/** Body of `/storage/snapshot/revert`. */
export interface RevertSnapshotCommand extends VolumeCommand {
  snapshotFileUuid: string;
  currentTopFileUuid: string;
  newTopFileUuid: string;
}

/** Body of `/storage/snapshot/delete`. */
export interface DeleteSnapshotCommand extends VolumeCommand {
  snapshotFileUuid: string;
  currentTopFileUuid: string;
}

/** Body of `/storage/smp/marker/write` and `/storage/smp/marker/remove`. */
export interface SmpMarkerCommand extends StorageRootCommand {
  markerUuid: string;
}

/** Body of `/storage/smp/marker/verify`. */
export interface SmpMarkerVerifyCommand extends SmpMarkerCommand {
  token: string;
}

/** Per-request inputs that the command server passes to a storage command besides its body. */
export interface StorageCommandContext {
  /** Cancels the command, for example when its task is cancelled. */
  signal?: AbortSignal;
  /** Receives download progress of long commands, to forward to the management node. */
  onProgress?: (progress: DownloadProgress) => void;
}

/** The command paths with their body and reply types. */
export interface StorageCommands {
  "/imagestore/init": [StorageRootCommand, FilesystemCapacity];
  "/imagestore/capacity": [StorageRootCommand, FilesystemCapacity];
  "/imagestore/download": [ImageStoreDownloadCommand, StoredImage];
  "/imagestore/upload": [ImageStoreUploadCommand, StoredImage];
  "/imagestore/image/get": [ImageStoreImageCommand, StoredImage];
  "/imagestore/image/delete": [ImageStoreImageCommand, Record<string, never>];
  "/storage/primary/init": [StorageRootCommand, PrimaryStorageCapacity];
  "/storage/primary/capacity": [StorageRootCommand, PrimaryStorageCapacity];
  "/storage/imagecache/fill": [ImageCacheFillCommand, CachedImage];
  "/storage/imagecache/delete": [ImageCacheDeleteCommand, Record<string, never>];
  "/storage/imagecache/gc": [ImageCacheGcCommand, ImageCacheGcResult];
  "/storage/volume/root/create": [CreateRootVolumeCommand, VolumeFileInfo];
  "/storage/volume/data/create": [CreateDataVolumeCommand, VolumeFileInfo];
  "/storage/volume/delete": [VolumeCommand, Record<string, never>];
  "/storage/volume/files": [VolumeCommand, { files: VolumeFileInfo[] }];
  "/storage/volume/resize": [ResizeVolumeCommand, VolumeFileInfo];
  "/storage/volume/export": [ExportVolumeCommand, { size: number }];
  "/storage/snapshot/take": [
    TakeSnapshotCommand,
    { snapshot: VolumeFileInfo; newTop: VolumeFileInfo },
  ];
  "/storage/snapshot/revert": [RevertSnapshotCommand, VolumeFileInfo];
  "/storage/snapshot/delete": [DeleteSnapshotCommand, { rebasedFileUuids: string[] }];
  "/storage/smp/marker/write": [SmpMarkerCommand, { token: string }];
  "/storage/smp/marker/verify": [SmpMarkerVerifyCommand, { verified: boolean }];
  "/storage/smp/marker/remove": [SmpMarkerCommand, Record<string, never>];
}

/** One handler per storage command path. */
export type StorageCommandHandlers = {
  [P in keyof StorageCommands]: (
    body: StorageCommands[P][0],
    context: StorageCommandContext,
  ) => Promise<StorageCommands[P][1]>;
};

/**
 * Builds the handlers of the storage command paths. The URL policy comes from the agent's own
 * configuration and never from a command body, so the management node cannot widen it.
 */
export function storageCommandHandlers(policy: UrlPolicy): StorageCommandHandlers {
  return {
    "/imagestore/init": async (body) => initImageStore(checkRoot(body)),
    "/imagestore/capacity": async (body) => imageStoreCapacity(checkRoot(body)),
    "/imagestore/download": async (body, context) =>
      addImage(checkRoot(body), { ...policy, ...downloadFields(body), ...context }),
    "/imagestore/upload": async (body, context) =>
      expectUpload(checkRoot(body), {
        imageUuid: body.imageUuid,
        maxBytes: body.maxBytes,
        ...context,
      }),
    "/imagestore/image/get": async (body) => getImage(checkRoot(body), body.imageUuid),
    "/imagestore/image/delete": async (body) => empty(deleteImage(checkRoot(body), body.imageUuid)),
    "/storage/primary/init": async (body) => initPrimaryStorage(checkRoot(body)),
    "/storage/primary/capacity": async (body) => primaryStorageCapacity(checkRoot(body)),
    "/storage/imagecache/fill": async (body, context) =>
      fillImageCache(checkRoot(body), {
        ...policy,
        ...downloadFields(body),
        sha256: body.sha256,
        md5: body.md5,
        ...context,
      }),
    "/storage/imagecache/delete": async (body) =>
      empty(deleteCachedImage(checkRoot(body), body.imageUuid)),
    "/storage/imagecache/gc": async (body) =>
      collectImageCacheGarbage(checkRoot(body), {
        imageUuids: body.imageUuids,
        graceSeconds: body.graceSeconds,
      }),
    "/storage/volume/root/create": async (body) =>
      createRootVolume(checkRoot(body), {
        volume: { type: "Root", accountUuid: body.accountUuid, volumeUuid: body.volumeUuid },
        imageUuid: body.imageUuid,
        size: body.size,
      }),
    "/storage/volume/data/create": async (body) =>
      createDataVolume(checkRoot(body), {
        volume: { type: "Data", accountUuid: body.accountUuid, volumeUuid: body.volumeUuid },
        size: body.size,
      }),
    "/storage/volume/delete": async (body) => empty(deleteVolume(checkRoot(body), body.volume)),
    "/storage/volume/files": async (body) => ({
      files: await listVolumeFiles(checkRoot(body), body.volume),
    }),
    "/storage/volume/resize": async (body) =>
      growVolume(checkRoot(body), body.volume, body.topFileUuid, body.size),
    "/storage/volume/export": async (body, context) =>
      exportVolume(checkRoot(body), body.volume, body.topFileUuid, body.uploadUrl, context),
    "/storage/snapshot/take": async (body) => takeVolumeSnapshot(checkRoot(body), body),
    "/storage/snapshot/revert": async (body) => revertVolumeSnapshot(checkRoot(body), body),
    "/storage/snapshot/delete": async (body) => deleteVolumeSnapshot(checkRoot(body), body),
    "/storage/smp/marker/write": async (body) => ({
      token: await writeSmpMarker(checkRoot(body), body.markerUuid),
    }),
    "/storage/smp/marker/verify": async (body) => ({
      verified: await verifySmpMarker(checkRoot(body), body.markerUuid, body.token),
    }),
    "/storage/smp/marker/remove": async (body) =>
      empty(removeSmpMarker(checkRoot(body), body.markerUuid)),
  };
}

function downloadFields(body: { imageUuid: string; url: string; maxBytes?: number }) {
  return { imageUuid: body.imageUuid, url: body.url, maxBytes: body.maxBytes };
}

/**
 * Rejects a storage root that is not a normalized absolute path, so a body cannot point a
 * command at a relative directory or climb out of its root with `..`.
 */
export function checkRoot(body: StorageRootCommand) {
  const { root } = body;

  const valid = typeof root === "string" && path.isAbsolute(root) && path.normalize(root) === root;

  if (!valid || root === "/") {
    throw new StorageError(
      "INVALID_ARGUMENT",
      `invalid storage root ${JSON.stringify(root)}: expected a normalized absolute path below /`,
    );
  }

  return root.replace(/\/+$/, "");
}

async function empty(operation: Promise<void>): Promise<Record<string, never>> {
  await operation;
  return {};
}
