import type { Db } from "../db/migration-helpers.js";

/**
 * Indexes that let a VM create take an address without scanning the L3 network's used addresses.
 * The first free address is found in numeric order of the addresses, and the DHCP server address
 * is looked up by what the address is used for. Without them both scans grew with every VM.
 */
export async function createUsedIpIndexes(db: Db) {
  await db.schema
    .createIndex("usedIps_l3_long")
    .on("usedIps")
    .columns(["l3NetworkUuid", "ipInLong"])
    .execute();
  await db.schema
    .createIndex("usedIps_l3_used_for")
    .on("usedIps")
    .columns(["l3NetworkUuid", "usedFor"])
    .execute();
}
