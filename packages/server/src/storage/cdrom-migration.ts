import type { Db } from "../db/migration-helpers.js";

/** Creates the table of ISO images inserted into VMs' CD-ROM drives, one per VM. */
export async function createVmCdRomTable(db: Db) {
  await db.schema
    .createTable("vmCdRoms")
    .addColumn("vmInstanceUuid", "varchar(32)", (column) =>
      column.primaryKey().references("vmInstances.uuid").onDelete("cascade"),
    )
    .addColumn("isoUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("primaryStorageUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("installPath", "varchar(2048)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .execute();
}
