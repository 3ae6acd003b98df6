import type { CreateTableBuilder, Kysely } from "kysely";

// biome-ignore lint/suspicious/noExplicitAny: migrations run before the typed schema exists.
export type Db = Kysely<any>;
// biome-ignore lint/suspicious/noExplicitAny: same reason.
export type Table = CreateTableBuilder<string, any>;

/** Adds the columns every resource table has. */
export function resourceColumns(table: Table): Table {
  return table
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("name", "varchar(255)", (column) => column.notNull())
    .addColumn("description", "text")
    .addColumn("accountUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .addColumn("version", "integer", (column) => column.notNull().defaultTo(0));
}

/** Indexes that every resource table gets, for owner filtering and the default sort. */
export async function resourceIndexes(db: Db, table: string) {
  await db.schema.createIndex(`${table}_account`).on(table).column("accountUuid").execute();
  await db.schema.createIndex(`${table}_create_date`).on(table).column("createDate").execute();
  await db.schema.createIndex(`${table}_name`).on(table).column("name").execute();
}
