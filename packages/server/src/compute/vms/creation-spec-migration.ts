import type { Db } from "../../db/migration-helpers.js";

/** Creates the table of what a JustCreate VM asked for, read when it first starts. */
export async function createVmCreationSpecs(db: Db) {
  await db.schema
    .createTable("vmCreationSpecs")
    .addColumn("vmInstanceUuid", "varchar(32)", (column) =>
      column.primaryKey().references("vmInstances.uuid").onDelete("cascade"),
    )
    .addColumn("spec", "text", (column) => column.notNull())
    .execute();
}
