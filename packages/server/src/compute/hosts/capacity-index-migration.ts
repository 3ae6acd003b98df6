import type { Db } from "../../db/migration-helpers.js";

/**
 * Indexes hosts' free memory, so the allocator reads the hosts with the most free memory in
 * index order and stops at the first few that pass its filters, instead of sorting every host.
 */
export async function createHostCapacityMemoryIndex(db: Db) {
  await db.schema
    .createIndex("hostCapacities_available_memory")
    .on("hostCapacities")
    .column("availableMemory")
    .execute();
}
