import { ApiError } from "@tstack/api";
import type { Transaction } from "kysely";
import { cleanUpOnHost } from "../compute/hosts/cleanups.js";
import type { VolumeAttachment, VolumeService } from "../compute/vm-resources.js";
import type { Core } from "../core/core.js";
import { newUuid, now } from "../core/ids.js";
import type { Database } from "../db/schema.js";
import { deleteResourceRow, insertResource } from "../resources/crud.js";
import type { ApiCall } from "../rest/api.js";
import { agentReason, imageDownloadUrl, storageCall, storageCallAsync } from "./agent.js";
import { reservationFor, reserveCapacity, returnCapacity } from "./capacity.js";

interface CachedImage {
  path: string;
  virtualSize: number;
  actualSize: number;
  sourceMd5: string;
}

interface VolumeFileInfo {
  fileUuid: string;
  path: string;
  virtualSize: number;
  actualSize: number;
}

/** Builds the call-shaped value `insertResource` needs for rows that no API request creates. */
function internalCall(uuid: string, accountUuid: string) {
  return {
    params: { resourceUuid: uuid },
    caller: { accountUuid, isAdmin: true },
    systemTags: [],
    userTags: [],
  } as unknown as ApiCall;
}

/**
 * Volumes for the VM workflows: root volume allocation with capacity reservation, creation of
 * the qcow2 overlay on the host through the image cache, and deletion.
 */
export class StorageVolumeService implements VolumeService {
  /** Image cache fills in flight, by primary storage, host and image: one copy each. */
  private readonly fills = new Map<string, Promise<CachedImage>>();

  /** Root volume creations in flight, by volume: concurrent callers share one. */
  private readonly creations = new Map<string, Promise<VolumeAttachment>>();

  constructor(private readonly core: Core) {}

  async allocateRootVolume(
    tx: Transaction<Database>,
    request: {
      vmUuid: string;
      accountUuid: string;
      imageUuid: string;
      hostUuid: string;
      size?: number;
    },
  ) {
    const image = await tx
      .selectFrom("images")
      .select(["uuid", "status", "state", "size", "mediaType"])
      .where("uuid", "=", request.imageUuid)
      .executeTakeFirst();

    if (!image || image.status !== "Ready" || image.state !== "Enabled") {
      throw new ApiError(
        "invalidArgument",
        `image ${request.imageUuid} is ${image ? `${image.state} and ${image.status}` : "not found"}; a root volume needs an Enabled, Ready image`,
      );
    }

    const size = Math.max(Number(image.size), request.size ?? 0);
    const amount = reservationFor(this.core, size);
    const candidates = await this.candidates(tx, request.hostUuid);

    for (const candidate of candidates) {
      const hostUuid = candidate.type === "LocalStorage" ? request.hostUuid : null;

      if (await reserveCapacity(this.core, tx, candidate.uuid, hostUuid, amount)) {
        const volumeUuid = newUuid();
        await insertResource(
          tx,
          this.core,
          "Volume",
          {
            uuid: volumeUuid,
            name: `ROOT-for-${request.vmUuid}`,
            accountUuid: request.accountUuid,
            type: "Root",
            vmInstanceUuid: request.vmUuid,
            primaryStorageUuid: candidate.uuid,
            hostUuid,
            rootImageUuid: request.imageUuid,
            diskOfferingUuid: null,
            format: "qcow2",
            size,
            actualSize: 0,
            reservedCapacity: amount,
            deviceId: 0,
            state: "Enabled",
            status: "Creating",
            installPath: null,
            topFileUuid: null,
            lastError: null,
          },
          internalCall(volumeUuid, request.accountUuid),
        );
        return { volumeUuid, primaryStorageUuid: candidate.uuid };
      }

      if (hostUuid) {
        // The storage-wide part was taken before the host's share ran short; give it back.
        await returnCapacity(tx, candidate.uuid, null, amount);
      }
    }

    throw new ApiError(
      "operationFailed",
      `no primary storage reachable from host ${request.hostUuid} has ${amount} bytes free above primaryStorage.reservedCapacity (checked ${candidates.length})`,
      "attach a primary storage with room to the host's cluster, or free capacity",
    );
  }

  /** Enabled, Connected primary storage attached to the host's cluster, roomiest first. */
  private async candidates(tx: Transaction<Database>, hostUuid: string) {
    return tx
      .selectFrom("primaryStorages")
      .innerJoin(
        "primaryStorageClusterRefs",
        "primaryStorageClusterRefs.primaryStorageUuid",
        "primaryStorages.uuid",
      )
      .innerJoin("hosts", "hosts.clusterUuid", "primaryStorageClusterRefs.clusterUuid")
      .select(["primaryStorages.uuid", "primaryStorages.type"])
      .where("hosts.uuid", "=", hostUuid)
      .where("primaryStorages.state", "=", "Enabled")
      .where("primaryStorages.status", "=", "Connected")
      .orderBy("primaryStorages.availableCapacity", "desc")
      .execute();
  }

  instantiateRootVolume(volumeUuid: string, hostUuid: string, signal?: AbortSignal) {
    let creation = this.creations.get(volumeUuid);

    if (!creation) {
      creation = this.createRootVolume(volumeUuid, hostUuid, signal).finally(() =>
        this.creations.delete(volumeUuid),
      );
      this.creations.set(volumeUuid, creation);
    }

    return creation;
  }

  private async createRootVolume(
    volumeUuid: string,
    hostUuid: string,
    signal?: AbortSignal,
  ): Promise<VolumeAttachment> {
    const volume = await this.core.kysely
      .selectFrom("volumes")
      .selectAll()
      .where("uuid", "=", volumeUuid)
      .executeTakeFirstOrThrow();

    if (volume.status === "Ready" && volume.installPath) {
      return attachment(volume);
    }

    const ps = await this.core.kysely
      .selectFrom("primaryStorages")
      .select(["uuid", "url", "type"])
      .where("uuid", "=", volume.primaryStorageUuid!)
      .executeTakeFirstOrThrow();
    const imageUuid = volume.rootImageUuid!;
    await this.ensureImageCache(ps, hostUuid, imageUuid, signal);

    let file: VolumeFileInfo;

    try {
      file = await storageCall<VolumeFileInfo>(this.core, hostUuid, "/storage/volume/root/create", {
        root: ps.url,
        accountUuid: volume.accountUuid,
        volumeUuid,
        imageUuid,
        size: Number(volume.size),
      });
    } catch (error) {
      throw new ApiError(
        "operationFailed",
        `failed to create root volume ${volumeUuid} on host ${hostUuid}: ${agentReason(error)}`,
        "check the primary storage directory on that host, then retry",
      );
    }

    await this.core.transact(async (tx) => {
      await tx
        .updateTable("volumes")
        .set({
          status: "Ready",
          installPath: file.path,
          topFileUuid: file.fileUuid,
          actualSize: file.actualSize,
          lastOpDate: now(),
          version: Number(volume.version) + 1,
        })
        .where("uuid", "=", volumeUuid)
        .execute();
    });
    return { volumeUuid, installPath: file.path, deviceId: 0, format: "qcow2" as const };
  }

  /**
   * Copies an image into a primary storage's cache for a host, once, and returns the cached
   * file; ISO images use it for CD-ROM drives.
   */
  async cacheImage(primaryStorageUuid: string, hostUuid: string, imageUuid: string) {
    const ps = await this.core.kysely
      .selectFrom("primaryStorages")
      .select(["uuid", "url", "type"])
      .where("uuid", "=", primaryStorageUuid)
      .executeTakeFirstOrThrow();
    return this.ensureImageCache(ps, hostUuid, imageUuid);
  }

  /** Copies the image into the primary storage's cache once per storage, host and image. */
  private ensureImageCache(
    ps: { uuid: string; url: string; type: string },
    hostUuid: string,
    imageUuid: string,
    signal?: AbortSignal,
  ) {
    const cacheHost = ps.type === "LocalStorage" ? hostUuid : "";
    const key = `${ps.uuid}:${cacheHost}:${imageUuid}`;
    let fill = this.fills.get(key);

    if (!fill) {
      fill = this.fillImageCache(ps, hostUuid, cacheHost, imageUuid, signal).finally(() =>
        this.fills.delete(key),
      );
      this.fills.set(key, fill);
    }

    return fill;
  }

  private async fillImageCache(
    ps: { uuid: string; url: string },
    hostUuid: string,
    cacheHost: string,
    imageUuid: string,
    signal?: AbortSignal,
  ): Promise<CachedImage> {
    const source = await this.core.kysely
      .selectFrom("imageBackupStorageRefs")
      .innerJoin(
        "backupStorages",
        "backupStorages.uuid",
        "imageBackupStorageRefs.backupStorageUuid",
      )
      .innerJoin("images", "images.uuid", "imageBackupStorageRefs.imageUuid")
      .select([
        "backupStorages.uuid",
        "backupStorages.hostUuid",
        "images.format",
        "images.sha256",
        "imageBackupStorageRefs.installPath",
      ])
      .where("imageBackupStorageRefs.imageUuid", "=", imageUuid)
      .where("imageBackupStorageRefs.status", "=", "Ready")
      .where("backupStorages.status", "=", "Connected")
      .executeTakeFirst();

    if (!source) {
      throw new ApiError(
        "operationFailed",
        `image ${imageUuid} has no Ready copy on a Connected backup storage`,
        "reconnect the image's backup storage or add the image again",
      );
    }

    // The stored file is qcow2, raw or tar whatever the image's media type; its name says which.
    const format = storedFormat(source.installPath);
    const url = await imageDownloadUrl(this.core, source, { imageUuid, format });
    let cached: CachedImage;

    try {
      cached = await storageCallAsync<CachedImage>(
        this.core,
        hostUuid,
        "/storage/imagecache/fill",
        { root: ps.url, imageUuid, url, sha256: source.sha256 ?? undefined },
        {
          timeoutMs: this.core.config.number("primaryStorage", "imageCache.timeout") * 1000,
          signal,
        },
      );
    } catch (error) {
      throw new ApiError(
        "operationFailed",
        `failed to copy image ${imageUuid} into the cache of primary storage ${ps.uuid} on host ${hostUuid}: ${agentReason(error)}`,
        "check that the host reaches the image store's host, then retry",
      );
    }

    await this.recordImageCache(ps.uuid, cacheHost, imageUuid, cached);
    return cached;
  }

  private async recordImageCache(
    primaryStorageUuid: string,
    hostUuid: string,
    imageUuid: string,
    cached: CachedImage,
  ) {
    const stamp = now();
    await this.core.kysely
      .insertInto("imageCaches")
      .values({
        uuid: newUuid(),
        primaryStorageUuid,
        hostUuid,
        imageUuid,
        installUrl: cached.path,
        size: cached.virtualSize,
        actualSize: cached.actualSize,
        md5: cached.sourceMd5,
        state: "Ready",
        createDate: stamp,
        lastOpDate: stamp,
      })
      .onConflict((conflict) =>
        conflict.columns(["primaryStorageUuid", "hostUuid", "imageUuid"]).doUpdateSet({
          installUrl: cached.path,
          actualSize: cached.actualSize,
          lastOpDate: stamp,
        }),
      )
      .execute();
  }

  async deleteVmVolumes(vmUuid: string) {
    const volumes = await this.core.kysely
      .selectFrom("volumes")
      .selectAll()
      .where("vmInstanceUuid", "=", vmUuid)
      .execute();

    for (const volume of volumes) {
      if (volume.type !== "Root") {
        // Data volumes outlive the VM, as in ZStack: they are only detached.
        await this.core.kysely
          .updateTable("volumes")
          .set({ vmInstanceUuid: null, deviceId: null, lastOpDate: now() })
          .where("uuid", "=", volume.uuid)
          .execute();
        continue;
      }

      await expungeVolume(this.core, volume);
    }
  }

  async vmVolumes(vmUuid: string): Promise<VolumeAttachment[]> {
    const volumes = await this.core.kysely
      .selectFrom("volumes")
      .selectAll()
      .where("vmInstanceUuid", "=", vmUuid)
      .where("status", "=", "Ready")
      .orderBy("deviceId")
      .execute();
    const root = volumes.filter((volume) => volume.type === "Root");
    const data = volumes.filter((volume) => volume.type !== "Root");
    return [...root, ...data].map((volume) => attachment(volume));
  }
}

function attachment(volume: { uuid: string; installPath: string | null; deviceId: number | null }) {
  return {
    volumeUuid: volume.uuid,
    installPath: volume.installPath!,
    deviceId: volume.deviceId ?? 0,
    format: "qcow2" as const,
  };
}

/** Picks the host that reaches a volume's files: its own on local storage, else any connected one. */
export async function volumeHost(
  core: Core,
  volume: { primaryStorageUuid: string | null; hostUuid: string | null },
) {
  if (volume.hostUuid) {
    return volume.hostUuid;
  }

  const host = await core.kysely
    .selectFrom("hosts")
    .innerJoin(
      "primaryStorageClusterRefs",
      "primaryStorageClusterRefs.clusterUuid",
      "hosts.clusterUuid",
    )
    .select("hosts.uuid")
    .where("primaryStorageClusterRefs.primaryStorageUuid", "=", volume.primaryStorageUuid!)
    .where("hosts.status", "=", "Connected")
    .executeTakeFirst();
  return host?.uuid;
}

/**
 * Removes a volume's files from its host, then its rows, snapshots included, and gives back its
 * capacity. A volume that never got files (status Creating or NotInstantiated) only loses rows.
 */
export async function expungeVolume(
  core: Core,
  volume: {
    uuid: string;
    type: string;
    accountUuid: string;
    primaryStorageUuid: string | null;
    hostUuid: string | null;
    reservedCapacity: number;
  },
) {
  if (volume.primaryStorageUuid) {
    const ps = await core.kysely
      .selectFrom("primaryStorages")
      .select("url")
      .where("uuid", "=", volume.primaryStorageUuid)
      .executeTakeFirstOrThrow();
    const hostUuid = await volumeHost(core, volume);

    if (!hostUuid) {
      throw new ApiError(
        "operationFailed",
        `no connected host reaches primary storage ${volume.primaryStorageUuid} to delete volume ${volume.uuid}`,
        "reconnect a host of the storage's clusters, then retry",
      );
    }

    // Deleting a volume directory that was never made succeeds, so half-made volumes go too.
    // On an unreachable host the delete is kept and runs when the host connects again.
    await cleanUpOnHost(core, {
      hostUuid,
      path: "/storage/volume/delete",
      body: {
        root: ps.url,
        volume: { type: volume.type, accountUuid: volume.accountUuid, volumeUuid: volume.uuid },
      },
      reason: `delete volume ${volume.uuid}`,
    });
  }

  await core.transact(async (tx) => {
    const row = await tx
      .selectFrom("volumes")
      .selectAll()
      .where("uuid", "=", volume.uuid)
      .executeTakeFirst();

    if (!row) {
      return;
    }

    const snapshots = await tx
      .selectFrom("volumeSnapshots")
      .selectAll()
      .where("volumeUuid", "=", volume.uuid)
      .execute();

    for (const snapshot of snapshots) {
      await deleteResourceRow(tx, "VolumeSnapshot", snapshot);
    }

    if (row.primaryStorageUuid) {
      await returnCapacity(tx, row.primaryStorageUuid, row.hostUuid, Number(row.reservedCapacity));
    }

    await deleteResourceRow(tx, "Volume", row);
  });
}

function storedFormat(installPath: string | null) {
  if (installPath?.endsWith(".raw")) {
    return "raw" as const;
  }

  return installPath?.endsWith(".tar") ? ("tar" as const) : ("qcow2" as const);
}
