import type { Core } from "../core/core.js";
import type { VolumeSnapshotTable } from "../db/schema.js";
import type { Caller } from "../identity/sessions.js";
import { loadResource, updateResource } from "../resources/crud.js";
import { storageCall } from "./agent.js";
import {
  commitSnapshot,
  dropSnapshot,
  type TakenSnapshot,
  type VolumeFileInfo,
  volumeTarget,
} from "./snapshots-api.js";

function ownerOf(row: VolumeSnapshotTable) {
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
  const target = await volumeTarget(core, volume as unknown as Record<string, unknown>);
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

async function finishCreating(core: Core, row: VolumeSnapshotTable) {
  const ids = { snapshotUuid: row.uuid, volumeUuid: row.volumeUuid };
  let taken: TakenSnapshot | undefined;

  try {
    taken = await findTakenFiles(core, row);
  } catch (error) {
    // NOTE: when the host cannot be asked, the row is removed. If a running VM already writes to
    // the new top file, the volume still names the old top, and the VM's next start loses those
    // writes.
    core.log.warn({ ...ids, err: error }, "cannot list the volume's files to recover a snapshot");
  }

  if (taken) {
    const done = taken;
    await core.transact((tx) => commitSnapshot(tx, row.uuid, done, ownerOf(row)));
    core.log.info(ids, "completed a snapshot that a restart left Creating");
    return;
  }

  await dropSnapshot(core, row.volumeUuid, row.uuid);
  core.log.warn(ids, "removed a snapshot that a restart left Creating");
}

/**
 * Finishes the snapshots that a restart left Creating or Deleting, before new work is accepted.
 * A Creating snapshot whose new top file exists is completed, because the agent took it and a
 * running VM already writes to that file. Any other Creating snapshot is removed with its
 * reserved capacity. A Deleting snapshot goes back to Ready, because deleting it again finishes
 * the merge.
 */
export async function recoverUnfinishedSnapshots(core: Core) {
  const rows = await core.kysely
    .selectFrom("volumeSnapshots")
    .selectAll()
    .where("status", "in", ["Creating", "Deleting"])
    .execute();

  for (const row of rows) {
    if (row.status === "Creating") {
      await finishCreating(core, row);
      continue;
    }

    await core.transact(async (tx) => {
      const snapshot = await loadResource(tx, "VolumeSnapshot", row.uuid, ownerOf(row));
      await updateResource(tx, "VolumeSnapshot", snapshot, { status: "Ready" });
    });
    core.log.warn(
      { snapshotUuid: row.uuid, volumeUuid: row.volumeUuid },
      "set a snapshot that a restart left Deleting back to Ready; delete it again to finish",
    );
  }
}
