import type { Db } from "../db/migration-helpers.js";

/** Creates the tables that let the management node register simulator hosts and storage again. */
export async function createSimulatorTables(db: Db) {
  await db.schema
    .createTable("simulatorHosts")
    .addColumn("uuid", "varchar(32)", (column) =>
      column.primaryKey().references("hosts.uuid").onDelete("cascade"),
    )
    .addColumn("cpuCapacity", "integer", (column) => column.notNull())
    .addColumn("memoryCapacity", "bigint", (column) => column.notNull())
    .execute();

  await db.schema
    .createTable("simulatorStorages")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("kind", "varchar(16)", (column) => column.notNull())
    .addColumn("url", "varchar(2048)", (column) => column.notNull())
    .addColumn("totalCapacity", "bigint", (column) => column.notNull())
    .addColumn("availableCapacity", "bigint", (column) => column.notNull())
    .addColumn("agentSecret", "text")
    .execute();
}
