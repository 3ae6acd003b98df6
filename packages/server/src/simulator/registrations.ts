import type { HostRegistration, StorageRegistration } from "@tstack/simulator";
import type { Core } from "../core/core.js";
import type { SimulatorStorageTable } from "./schema.js";

/** Columns of a simulator host that its registration needs. */
export interface SimulatorHostRow {
  uuid: string;
  agentSecret: string;
  cpuCapacity: number;
  memoryCapacity: number;
}

/** Reads the simulator host rows, all of them or one. */
export function simulatorHostRows(core: Core, hostUuid?: string): Promise<SimulatorHostRow[]> {
  let query = core.kysely
    .selectFrom("hosts")
    .innerJoin("simulatorHosts", "simulatorHosts.uuid", "hosts.uuid")
    .select(["hosts.uuid", "hosts.agentSecret", "cpuCapacity", "memoryCapacity"]);

  if (hostUuid) {
    query = query.where("hosts.uuid", "=", hostUuid);
  }

  return query.execute();
}

export function hostRegistration(core: Core, row: SimulatorHostRow): HostRegistration {
  return {
    uuid: row.uuid,
    secret: core.secrets.open(row.agentSecret),
    cpuNum: Number(row.cpuCapacity),
    memoryBytes: Number(row.memoryCapacity),
  };
}

export function storageRegistration(
  core: Core,
  row: SimulatorStorageTable,
  images: StorageRegistration["images"] = [],
): StorageRegistration {
  return {
    uuid: row.uuid,
    kind: row.kind === "backup" ? "backup" : "primary",
    url: row.url,
    totalCapacity: Number(row.totalCapacity),
    availableCapacity: Number(row.availableCapacity),
    ...(row.agentSecret ? { secret: core.secrets.open(row.agentSecret) } : {}),
    ...(images.length > 0 ? { images } : {}),
  };
}

/**
 * Lists the images the database records as stored on a backup storage, with their URLs. An image
 * whose URL does not parse is left out, because the simulator derives the image from its URL.
 */
export async function storedImages(core: Core, backupStorageUuid: string) {
  return core.kysely
    .selectFrom("imageBackupStorageRefs")
    .innerJoin("images", "images.uuid", "imageBackupStorageRefs.imageUuid")
    .select(["images.uuid as imageUuid", "images.url as url"])
    .where("imageBackupStorageRefs.backupStorageUuid", "=", backupStorageUuid)
    .where("imageBackupStorageRefs.status", "=", "Ready")
    .execute()
    .then((images) => images.filter((image) => URL.canParse(image.url)));
}
