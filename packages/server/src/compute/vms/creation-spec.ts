import type { Kysely, Transaction } from "kysely";
import type { Database } from "../../db/schema.js";
import type { VmData } from "./workflows.js";

/** The placement and network request of a JustCreate VM, kept until its first start. */
export type CreationSpec = Pick<
  VmData,
  "l3NetworkUuids" | "staticIps" | "rootDiskSize" | "requestedHostUuid" | "requestedClusterUuid"
>;

export async function saveCreationSpec(
  tx: Transaction<Database>,
  vmUuid: string,
  spec: CreationSpec,
) {
  await tx
    .insertInto("vmCreationSpecs")
    .values({ vmInstanceUuid: vmUuid, spec: JSON.stringify(spec) })
    .execute();
}

/** Returns the spec of a VM that has never started, or undefined once it has. */
export async function loadCreationSpec(
  db: Kysely<Database>,
  vmUuid: string,
): Promise<CreationSpec | undefined> {
  const row = await db
    .selectFrom("vmCreationSpecs")
    .select("spec")
    .where("vmInstanceUuid", "=", vmUuid)
    .executeTakeFirst();

  return row ? (JSON.parse(row.spec) as CreationSpec) : undefined;
}

export async function forgetCreationSpec(tx: Transaction<Database>, vmUuid: string) {
  await tx.deleteFrom("vmCreationSpecs").where("vmInstanceUuid", "=", vmUuid).execute();
}
