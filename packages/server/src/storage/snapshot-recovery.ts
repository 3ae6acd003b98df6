import type { Core } from "../core/core.js";
import { loadResource, updateResource } from "../resources/crud.js";
import { ownerOf, settleCreating } from "./snapshot-files.js";

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
      await settleCreating(core, row, "the management node restarted");
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
