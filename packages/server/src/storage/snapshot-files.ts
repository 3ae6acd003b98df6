import type { VolumeFileInfo } from "@tstack/agent/storage";
import { ApiError } from "@tstack/api";
import type { Transaction } from "kysely";
import type { Core } from "../core/core.js";
import type { Database, VolumeSnapshotTable } from "../db/schema.js";
import type { Caller } from "../identity/sessions.js";
import { deleteResourceRow, loadResource, updateResource } from "../resources/crud.js";
import { storageCall } from "./agent.js";
import { returnCapacity } from "./capacity.js";
import { volumeHost } from "./volume-service.js";

type Row = Record<string, unknown>;

export type { VolumeFileInfo };

/** A volume with the primary storage root and the host whose agent reaches its files. */
export interface VolumeTarget {
  volume: Row;
  root: string;
  hostUuid: string;
  ref: { type: string; accountUuid: string; volumeUuid: string };
}

/** Finds where a volume's files are: its storage root and a connected host that reaches it. */
export async function volumeTarget(core: Core, volume: Row): Promise<VolumeTarget> {
  const ps = await core.kysely
    .selectFrom("primaryStorages")
    .select("url")
    .where("uuid", "=", String(volume.primaryStorageUuid))
    .executeTakeFirstOrThrow();
  const hostUuid = await volumeHost(core, {
    primaryStorageUuid: String(volume.primaryStorageUuid),
    hostUuid: (volume.hostUuid as string | null) ?? null,
  });

  if (!hostUuid) {
    throw new ApiError(
      "operationFailed",
      `no connected host reaches primary storage ${String(volume.primaryStorageUuid)} of volume ${String(volume.uuid)}`,
      "reconnect the volume's host, then retry",
    );
  }

  return {
    volume,
    root: ps.url,
    hostUuid,
    ref: {
      type: String(volume.type),
      accountUuid: String(volume.accountUuid),
      volumeUuid: String(volume.uuid),
    },
  };
}

/** Removes a Creating snapshot row and returns the capacity that `reserveSnapshot` took. */
export async function dropSnapshot(core: Core, volumeUuid: string, snapshotUuid: string) {
  await core.transact(async (tx) => {
    const volume = await tx
      .selectFrom("volumes")
      .selectAll()
      .where("uuid", "=", volumeUuid)
      .executeTakeFirstOrThrow();
    const reserved = await tx
      .selectFrom("volumeSnapshots")
      .select("size")
      .where("uuid", "=", snapshotUuid)
      .executeTakeFirst();
    const size = Number(reserved?.size ?? 0);
    const psUuid = String(volume.primaryStorageUuid);
    await returnCapacity(tx, psUuid, volume.hostUuid ?? null, size);
    await tx
      .updateTable("volumes")
      .set({ reservedCapacity: Math.max(0, Number(volume.reservedCapacity) - size) })
      .where("uuid", "=", volumeUuid)
      .execute();
    const row = await tx
      .selectFrom("volumeSnapshots")
      .selectAll()
      .where("uuid", "=", snapshotUuid)
      .executeTakeFirst();

    if (row) {
      await deleteResourceRow(tx, "VolumeSnapshot", row);
    }
  });
}

/** Frozen file and new top file of a snapshot, as the agent returns them. */
export interface TakenSnapshot {
  snapshot: VolumeFileInfo;
  newTop: VolumeFileInfo;
}

/**
 * Marks a snapshot Ready and latest, with the frozen file as its install path, and points the
 * volume at the new top file.
 */
export async function commitSnapshot(
  tx: Transaction<Database>,
  snapshotUuid: string,
  taken: TakenSnapshot,
  caller: Caller,
) {
  const snapshot = await loadResource(tx, "VolumeSnapshot", snapshotUuid, caller);
  const volumeUuid = String(snapshot.volumeUuid);
  await tx
    .updateTable("volumeSnapshots")
    .set({ latest: 0 })
    .where("volumeUuid", "=", volumeUuid)
    .execute();
  const inventory = await updateResource(tx, "VolumeSnapshot", snapshot, {
    status: "Ready",
    latest: 1,
    primaryStorageInstallPath: taken.snapshot.path,
  });
  const volume = await loadResource(tx, "Volume", volumeUuid, caller);
  await updateResource(tx, "Volume", volume, {
    installPath: taken.newTop.path,
    topFileUuid: taken.newTop.fileUuid,
  });
  return inventory;
}

/** The snapshot owner's account with admin rights, for work nobody requested through the API. */
export function ownerOf(row: VolumeSnapshotTable) {
  return { accountUuid: row.accountUuid, isAdmin: true } as Caller;
}

/**
 * Asks the volume's host whether the agent made the new top file of a Creating snapshot: a file
 * at the path recorded in the row, whose backing file is the volume's current top. Returns the
 * two files when it did.
 */
async function findTakenFiles(core: Core, row: VolumeSnapshotTable) {
  const volume = await core.kysely
    .selectFrom("volumes")
    .selectAll()
    .where("uuid", "=", row.volumeUuid)
    .executeTakeFirstOrThrow();
  const target = await volumeTarget(core, volume as unknown as Row);
  const { files } = await storageCall<{ files: VolumeFileInfo[] }>(
    core,
    target.hostUuid,
    "/storage/volume/files",
    { root: target.root, volume: target.ref },
  );
  const newTop = files.find((file) => file.path === row.primaryStorageInstallPath);
  const snapshot = files.find((file) => file.fileUuid === volume.topFileUuid);

  if (!newTop || !snapshot || newTop.backingFile !== snapshot.path) {
    return undefined;
  }

  return { snapshot, newTop } satisfies TakenSnapshot;
}

/**
 * Settles a Creating snapshot whose agent command ended without a clear result: a restart cut it
 * short, or the agent stopped replying. The snapshot is completed when the host shows the new top
 * file on the volume's current top, because the agent took it and a running VM already writes to
 * that file. Otherwise the row and its reserved capacity are removed. `cause` goes into the logs.
 */
export async function settleCreating(core: Core, row: VolumeSnapshotTable, cause: string) {
  const ids = { snapshotUuid: row.uuid, volumeUuid: row.volumeUuid, cause };
  let taken: TakenSnapshot | undefined;

  try {
    taken = await findTakenFiles(core, row);
  } catch (error) {
    // NOTE: when the host cannot be asked, the row is removed. If a running VM already writes to
    // the new top file, the volume still names the old top, and the VM's next start loses those
    // writes.
    core.log.warn({ ...ids, err: error }, "failed to list the volume's files to settle a snapshot");
  }

  if (taken) {
    const done = taken;
    await core.transact((tx) => commitSnapshot(tx, row.uuid, done, ownerOf(row)));
    core.log.info(ids, "completed a snapshot left Creating");
    return "completed";
  }

  await dropSnapshot(core, row.volumeUuid, row.uuid);
  core.log.warn(ids, "removed a snapshot left Creating");
  return "removed";
}
