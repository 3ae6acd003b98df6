import type { Db } from "../../db/migration-helpers.js";

/** Creates the table of cleanups kept for unreachable hosts; they go with their host. */
export async function createHostCleanups(db: Db) {
  await db.schema
    .createTable("hostCleanups")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("hostUuid", "varchar(32)", (column) =>
      column.notNull().references("hosts.uuid").onDelete("cascade"),
    )
    .addColumn("vmUuid", "varchar(32)")
    .addColumn("path", "varchar(255)", (column) => column.notNull())
    .addColumn("body", "text", (column) => column.notNull())
    .addColumn("async", "integer", (column) => column.notNull())
    .addColumn("reason", "text", (column) => column.notNull())
    .addColumn("attempts", "integer", (column) => column.notNull())
    .addColumn("lastError", "text")
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .execute();
  await db.schema
    .createIndex("hostCleanups_host")
    .on("hostCleanups")
    .columns(["hostUuid", "createDate"])
    .execute();
}
