import { ApiError } from "@tstack/api";
import { agentTarget } from "../compute/hosts/connect.js";
import type { Core } from "../core/core.js";
import { emitEvent } from "../core/events.js";
import { newUuid, now } from "../core/ids.js";
import {
  changeStateHandler,
  deleteResourceRow,
  insertResource,
  inventoryOf,
  loadResource,
  queryHandler,
  updateHandler,
  updateResource,
} from "../resources/crud.js";
import type { ApiCall, ApiHandlers } from "../rest/api.js";
import {
  agentReason,
  imageUploadUrl,
  storageCall,
  storageCallAsync,
  type TransferProgress,
} from "./agent.js";
import { refreshBackupStorageCapacity } from "./backup-storage.js";
import { checkImageUrl, redactUrl } from "./image-url.js";

/** Facts the agent records for an image it downloaded, from qemu-img and the hashes it took. */
export interface StoredImage {
  imageUuid: string;
  format: "qcow2" | "raw" | "tar";
  virtualSize: number;
  actualSize: number;
  size: number;
  sha256: string;
  md5: string;
}

/** Image status changes that the image APIs allow, by API. */
const IMAGE_STATUS_TRANSITIONS: Record<string, string[]> = {
  deleteImage: ["Ready", "Error", "Downloading"],
  recoverImage: ["Deleted"],
  expungeImage: ["Deleted"],
};

function checkImageStatus(api: string, image: Record<string, unknown>) {
  const allowed = IMAGE_STATUS_TRANSITIONS[api] ?? [];

  if (!allowed.includes(String(image.status))) {
    throw new ApiError(
      "invalidState",
      `cannot ${api.replace(/Image$/, "")} image ${String(image.uuid)} in status ${String(image.status)}; allowed in: ${allowed.join(", ")}`,
    );
  }
}

export async function usableBackupStorages(core: Core, uuids: string[]) {
  const stores = await core.kysely
    .selectFrom("backupStorages")
    .selectAll()
    .where("uuid", "in", uuids)
    .execute();

  for (const uuid of uuids) {
    const store = stores.find((candidate) => candidate.uuid === uuid);

    if (!store) {
      throw new ApiError(
        "invalidArgument",
        `params.backupStorageUuids: backup storage ${uuid} was not found`,
      );
    }

    if (store.state !== "Enabled" || store.status !== "Connected") {
      throw new ApiError(
        "invalidArgument",
        `params.backupStorageUuids: backup storage ${uuid} is ${store.state} and ${store.status}; enable and reconnect it first`,
      );
    }
  }

  return stores;
}

/** Downloads the image into one image store and records the copy; returns the stored facts. */
async function downloadToStore(
  core: Core,
  call: ApiCall,
  imageUuid: string,
  store: { uuid: string; url: string; hostUuid: string },
  report: (progress: TransferProgress) => Promise<void>,
) {
  // An upload:// image waits on its store for the bytes that the caller PUTs.
  const upload = isUpload(String(call.params.url));
  const stored = await storageCallAsync<StoredImage>(
    core,
    store.hostUuid,
    upload ? "/imagestore/upload" : "/imagestore/download",
    upload
      ? { root: store.url, imageUuid }
      : { root: store.url, imageUuid, url: String(call.params.url) },
    {
      timeoutMs: core.config.number("image", "download.timeout") * 1000,
      signal: call.signal,
      onProgress: report,
    },
  );
  await recordStoredCopy(core, imageUuid, store, stored);
  return stored;
}

/** Marks an image's copy in one image store Ready at its path, and refreshes the store's capacity. */
export async function recordStoredCopy(
  core: Core,
  imageUuid: string,
  store: { uuid: string; url: string },
  stored: StoredImage,
) {
  await core.kysely
    .updateTable("imageBackupStorageRefs")
    .set({
      status: "Ready",
      installPath: `${store.url}/images/${imageUuid}/${imageUuid}.${stored.format}`,
      lastOpDate: now(),
    })
    .where("imageUuid", "=", imageUuid)
    .where("backupStorageUuid", "=", store.uuid)
    .execute();
  await refreshBackupStorageCapacity(core, store.uuid).catch((error) =>
    core.log.warn({ err: error, backupStorageUuid: store.uuid }, "capacity refresh failed"),
  );
}

function isUpload(url: string) {
  return url.startsWith("upload://");
}

async function addImage(core: Core, call: ApiCall) {
  const imageUuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
  const storeUuids = call.params.backupStorageUuids as string[];
  const stores = await usableBackupStorages(core, storeUuids);
  const stamp = now();

  await core.transact(async (tx) => {
    await insertResource(
      tx,
      core,
      "Image",
      {
        uuid: imageUuid,
        name: call.params.name,
        description: call.params.description ?? null,
        state: "Enabled",
        status: "Downloading",
        url: redactUrl(String(call.params.url)),
        mediaType: call.params.mediaType ?? "RootVolumeTemplate",
        format: call.params.format ?? "qcow2",
        platform: call.params.platform ?? "Linux",
        guestOsType: call.params.guestOsType ?? null,
        size: 0,
        actualSize: 0,
        md5: null,
        sha256: null,
        lastError: null,
      },
      { ...call, params: { ...call.params, resourceUuid: imageUuid } },
    );
    await tx
      .insertInto("imageBackupStorageRefs")
      .values(
        storeUuids.map((backupStorageUuid) => ({
          imageUuid,
          backupStorageUuid,
          status: "Downloading",
          installPath: null,
          lastError: null,
          createDate: stamp,
          lastOpDate: stamp,
        })),
      )
      .execute();
  });

  const report = async (progress: TransferProgress) => {
    const total = progress.totalBytes;
    const percent = total ? Math.min(99, Math.floor((progress.bytesDone * 100) / total)) : 0;
    const text = total
      ? `downloaded ${progress.bytesDone} of ${total} bytes`
      : `downloaded ${progress.bytesDone} bytes`;
    await call.progress(percent, text);
  };

  const results = await Promise.allSettled(
    stores.map((store) => downloadToStore(core, call, imageUuid, store, report)),
  );
  await recordFailures(core, imageUuid, stores, results);
  const stored = results.find((result) => result.status === "fulfilled")?.value;

  if (!stored) {
    const reasons = results.map((result) =>
      result.status === "rejected" ? agentReason(result.reason) : "",
    );
    await markImage(core, imageUuid, { status: "Error", lastError: reasons.join("; ") });
    throw new ApiError(
      call.signal.aborted ? "cancelled" : "operationFailed",
      `failed to ${isUpload(String(call.params.url)) ? "receive the upload of" : "download"} image ${imageUuid} from ${redactUrl(String(call.params.url))}: ${reasons.join("; ")}`,
      "check the URL and the file it names, then add the image again",
    );
  }

  await markImage(core, imageUuid, {
    status: "Ready",
    format: call.params.mediaType === "ISO" ? "iso" : stored.format,
    size: stored.virtualSize,
    actualSize: stored.size,
    md5: stored.md5,
    sha256: stored.sha256,
    lastError: null,
  });
  return { inventory: await inventoryOf(core.kysely, "Image", imageUuid) };
}

export async function recordFailures(
  core: Core,
  imageUuid: string,
  stores: { uuid: string }[],
  results: PromiseSettledResult<unknown>[],
) {
  for (const [index, result] of results.entries()) {
    if (result.status === "rejected") {
      await core.kysely
        .updateTable("imageBackupStorageRefs")
        .set({ status: "Error", lastError: agentReason(result.reason), lastOpDate: now() })
        .where("imageUuid", "=", imageUuid)
        .where("backupStorageUuid", "=", stores[index]!.uuid)
        .execute();
    }
  }
}

export async function markImage(core: Core, imageUuid: string, changes: Record<string, unknown>) {
  await core.transact(async (tx) => {
    const row = await tx
      .selectFrom("images")
      .selectAll()
      .where("uuid", "=", imageUuid)
      .executeTakeFirstOrThrow();
    await updateResource(tx, "Image", row, changes);

    if (changes.status !== undefined && changes.status !== row.status) {
      await emitEvent(tx, "/image/status/change", {
        resourceUuid: imageUuid,
        accountUuid: row.accountUuid,
        content: { imageUuid, oldStatus: row.status, newStatus: changes.status },
      });
    }
  });
}

/**
 * Returns a fresh URL to PUT an upload:// image's bytes to, valid for
 * `image.upload.urlTtl` seconds, while its addImage job waits. Only the image's owner gets it.
 */
async function getImageUploadUrl(core: Core, call: ApiCall) {
  const image = await loadResource(core.kysely, "Image", call.path.uuid!, call.caller);

  if (!isUpload(String(image.url)) || image.status !== "Downloading") {
    throw new ApiError(
      "invalidState",
      `image ${String(image.uuid)} is ${String(image.status)} from ${String(image.url)}; only an upload:// image in status Downloading takes an upload`,
    );
  }

  const store = await core.kysely
    .selectFrom("imageBackupStorageRefs")
    .innerJoin("backupStorages", "backupStorages.uuid", "imageBackupStorageRefs.backupStorageUuid")
    .select(["backupStorages.uuid", "backupStorages.hostUuid"])
    .where("imageBackupStorageRefs.imageUuid", "=", String(image.uuid))
    .executeTakeFirstOrThrow();
  const ttl = core.config.number("image", "upload.urlTtl");
  const uploadUrl = await imageUploadUrl(core, store, String(image.uuid), ttl);
  return { uploadUrl, expiresInSeconds: ttl };
}

/** Removes the image's files from every image store that contains them, then its rows. */
async function expungeImage(core: Core, call: ApiCall) {
  const imageUuid = call.path.uuid!;
  const refs = await core.kysely
    .selectFrom("imageBackupStorageRefs")
    .innerJoin("backupStorages", "backupStorages.uuid", "imageBackupStorageRefs.backupStorageUuid")
    .select(["backupStorages.uuid", "backupStorages.url", "backupStorages.hostUuid"])
    .where("imageBackupStorageRefs.imageUuid", "=", imageUuid)
    .execute();

  for (const ref of refs) {
    try {
      await storageCall(core, ref.hostUuid, "/imagestore/image/delete", {
        root: ref.url,
        imageUuid,
      });
    } catch (error) {
      throw new ApiError(
        "operationFailed",
        `failed to remove image ${imageUuid} from backup storage ${ref.uuid}: ${agentReason(error)}`,
        "reconnect the backup storage, then call expungeImage again",
      );
    }

    await refreshBackupStorageCapacity(core, ref.uuid).catch(() => undefined);
  }

  return call.commit(async (tx) => {
    const row = await loadResource(tx, "Image", imageUuid, call.caller);
    await tx.deleteFrom("imageBackupStorageRefs").where("imageUuid", "=", imageUuid).execute();
    await deleteResourceRow(tx, "Image", row);
    return {};
  });
}

/**
 * Fails the images a crash left Downloading or Creating: the job that waited for their transfer
 * ran in a process that is gone. The agent of each store may still be transferring, so it gets
 * a delete of the image, which aborts the transfer and removes its files.
 */
export async function failUnfinishedImages(core: Core) {
  const unfinished = await core.kysely
    .selectFrom("images")
    .select("uuid")
    .where("status", "in", ["Downloading", "Creating"])
    .execute();
  const lastError = "the management node restarted before the image was stored; add it again";

  for (const { uuid } of unfinished) {
    const copies = await copiesInTransfer(core, uuid);
    await core.kysely
      .updateTable("imageBackupStorageRefs")
      .set({ status: "Error", lastError, lastOpDate: now() })
      .where("imageUuid", "=", uuid)
      .where("status", "in", ["Downloading", "Creating"])
      .execute();
    await markImage(core, uuid, { status: "Error", lastError });
    core.log.warn({ imageUuid: uuid }, "failed an image a restart left unfinished");
    // Start-up does not wait for the agents, because one that hangs would delay it.
    void deleteCopies(core, uuid, copies);
  }
}

/** Milliseconds that an agent gets to delete an unfinished image. */
const UNFINISHED_DELETE_TIMEOUT_MS = 15_000;

/** Returns the image stores whose copy of an image was still in transfer. */
function copiesInTransfer(core: Core, imageUuid: string) {
  return core.kysely
    .selectFrom("imageBackupStorageRefs")
    .innerJoin("backupStorages", "backupStorages.uuid", "imageBackupStorageRefs.backupStorageUuid")
    .select(["backupStorages.uuid", "backupStorages.url", "backupStorages.hostUuid"])
    .where("imageBackupStorageRefs.imageUuid", "=", imageUuid)
    .where("imageBackupStorageRefs.status", "in", ["Downloading", "Creating"])
    .execute();
}

/**
 * Deletes an image's files from the given image stores. A store that cannot be reached keeps them.
 * NOTE: such files stay until the image is deleted and expunged.
 */
async function deleteCopies(
  core: Core,
  imageUuid: string,
  stores: { uuid: string; url: string; hostUuid: string }[],
) {
  for (const store of stores) {
    try {
      const target = await agentTarget(core, store.hostUuid);
      const body = { root: store.url, imageUuid };
      const timeoutMs = UNFINISHED_DELETE_TIMEOUT_MS;
      await core.agents.call(target, "/imagestore/image/delete", body, timeoutMs);
    } catch (error) {
      core.log.warn(
        { err: error, imageUuid, backupStorageUuid: store.uuid },
        "failed to delete an unfinished image from its backup storage",
      );
    }
  }
}

export function imageHandlers(): ApiHandlers {
  const loadChecked = (api: string) => async (core: Core, call: ApiCall) => {
    const image = await loadResource(core.kysely, "Image", call.path.uuid!, call.caller);
    checkImageStatus(api, image);
  };

  return {
    addImage: {
      async check(core, call) {
        await checkImageUrl(core, "params.url", String(call.params.url));
        const storeUuids = call.params.backupStorageUuids as string[];
        await usableBackupStorages(core, storeUuids);

        if (isUpload(String(call.params.url)) && storeUuids.length !== 1) {
          throw new ApiError(
            "invalidArgument",
            `params.backupStorageUuids: an upload:// image goes to exactly one backup storage, got ${storeUuids.length}`,
          );
        }
      },
      run: addImage,
    },
    getImageUploadUrl: { run: getImageUploadUrl },
    queryImage: queryHandler("Image"),
    updateImage: updateHandler("Image", ["name", "description", "platform", "guestOsType"]),
    changeImageState: changeStateHandler("Image"),
    deleteImage: {
      check: loadChecked("deleteImage"),
      run: (_core, call) =>
        call.commit(async (tx) => {
          const row = await loadResource(tx, "Image", call.path.uuid!, call.caller);
          checkImageStatus("deleteImage", row);
          await updateResource(tx, "Image", row, { status: "Deleted" });
          await emitEvent(tx, "/image/status/change", {
            resourceUuid: String(row.uuid),
            accountUuid: String(row.accountUuid),
            content: { imageUuid: row.uuid, oldStatus: row.status, newStatus: "Deleted" },
          });
          return {};
        }),
    },
    recoverImage: {
      check: loadChecked("recoverImage"),
      run: (_core, call) =>
        call.commit(async (tx) => {
          const row = await loadResource(tx, "Image", call.path.uuid!, call.caller);
          checkImageStatus("recoverImage", row);
          const ready = await tx
            .selectFrom("imageBackupStorageRefs")
            .select("backupStorageUuid")
            .where("imageUuid", "=", String(row.uuid))
            .where("status", "=", "Ready")
            .executeTakeFirst();
          return {
            inventory: await updateResource(tx, "Image", row, {
              status: ready ? "Ready" : "Error",
            }),
          };
        }),
    },
    expungeImage: { check: loadChecked("expungeImage"), run: expungeImage },
  };
}
