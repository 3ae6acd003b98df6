import type { Kysely, Transaction } from "kysely";
import type { Database } from "../db/schema.js";
import { SIMULATOR } from "./targets.js";

/**
 * Picks the hypervisor type of a new VM: that of the host or cluster the request names, else
 * Simulator when every copy of its image is on simulator backup storage, else KVM.
 */
export async function vmHypervisorType(
  db: Kysely<Database> | Transaction<Database>,
  params: Record<string, unknown>,
): Promise<string> {
  if (typeof params.hostUuid === "string") {
    const host = await db
      .selectFrom("hosts")
      .select("hypervisorType")
      .where("uuid", "=", params.hostUuid)
      .executeTakeFirst();
    return host?.hypervisorType ?? "KVM";
  }

  if (typeof params.clusterUuid === "string") {
    const cluster = await db
      .selectFrom("clusters")
      .select("hypervisorType")
      .where("uuid", "=", params.clusterUuid)
      .executeTakeFirst();
    return cluster?.hypervisorType ?? "KVM";
  }

  const stores = await db
    .selectFrom("imageBackupStorageRefs")
    .innerJoin("backupStorages", "backupStorages.uuid", "imageBackupStorageRefs.backupStorageUuid")
    .select("backupStorages.type")
    .where("imageBackupStorageRefs.imageUuid", "=", String(params.imageUuid))
    .execute();
  const simulated =
    stores.length > 0 && stores.every((store) => store.type === "SimulatorBackupStorage");
  return simulated ? SIMULATOR : "KVM";
}
