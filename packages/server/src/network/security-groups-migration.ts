import type { Kysely } from "kysely";

// biome-ignore lint/suspicious/noExplicitAny: migrations run before the typed schema exists.
type Db = Kysely<any>;

async function createGroups(db: Db) {
  await db.schema
    .createTable("securityGroups")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("name", "varchar(255)", (column) => column.notNull())
    .addColumn("description", "text")
    .addColumn("accountUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("state", "varchar(16)", (column) => column.notNull())
    .addColumn("ipVersion", "integer", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .addColumn("version", "integer", (column) => column.notNull().defaultTo(0))
    .execute();

  for (const column of ["accountUuid", "createDate", "name"]) {
    await db.schema
      .createIndex(`securityGroups_${column}`)
      .on("securityGroups")
      .column(column)
      .execute();
  }
}

async function createRules(db: Db) {
  await db.schema
    .createTable("securityGroupRules")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("securityGroupUuid", "varchar(32)", (column) =>
      column.notNull().references("securityGroups.uuid").onDelete("cascade"),
    )
    .addColumn("type", "varchar(8)", (column) => column.notNull())
    .addColumn("protocol", "varchar(8)", (column) => column.notNull())
    .addColumn("startPort", "integer")
    .addColumn("endPort", "integer")
    .addColumn("allowedCidr", "varchar(18)")
    // A rule naming a deleted group would allow nobody; it goes with the group.
    .addColumn("remoteSecurityGroupUuid", "varchar(32)", (column) =>
      column.references("securityGroups.uuid").onDelete("cascade"),
    )
    .addColumn("ipVersion", "integer", (column) => column.notNull())
    .addColumn("priority", "integer", (column) => column.notNull())
    .addColumn("state", "varchar(16)", (column) => column.notNull())
    .addColumn("description", "text")
    .addColumn("accountUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .execute();
  await db.schema
    .createIndex("securityGroupRules_group")
    .on("securityGroupRules")
    .column("securityGroupUuid")
    .execute();
  await db.schema
    .createIndex("securityGroupRules_remote")
    .on("securityGroupRules")
    .column("remoteSecurityGroupUuid")
    .execute();
}

async function createRefs(db: Db) {
  await db.schema
    .createTable("securityGroupL3NetworkRefs")
    .addColumn("securityGroupUuid", "varchar(32)", (column) =>
      column.notNull().references("securityGroups.uuid").onDelete("cascade"),
    )
    .addColumn("l3NetworkUuid", "varchar(32)", (column) =>
      column.notNull().references("l3Networks.uuid").onDelete("cascade"),
    )
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("securityGroupL3NetworkRefs_pk", [
      "securityGroupUuid",
      "l3NetworkUuid",
    ])
    .execute();

  await db.schema
    .createTable("vmNicSecurityGroupRefs")
    .addColumn("vmNicUuid", "varchar(32)", (column) =>
      column.notNull().references("vmNics.uuid").onDelete("cascade"),
    )
    .addColumn("securityGroupUuid", "varchar(32)", (column) =>
      column.notNull().references("securityGroups.uuid").onDelete("cascade"),
    )
    .addColumn("vmInstanceUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("vmNicSecurityGroupRefs_pk", ["vmNicUuid", "securityGroupUuid"])
    .execute();
  await db.schema
    .createIndex("vmNicSecurityGroupRefs_group")
    .on("vmNicSecurityGroupRefs")
    .column("securityGroupUuid")
    .execute();
}

/** Migration 0006_security_groups. */
export async function createSecurityGroupTables(db: Db) {
  await createGroups(db);
  await createRules(db);
  await createRefs(db);
}

/** Creates the table of hosts whose security-group push failed and is being retried. */
export async function createSecurityGroupFailureHosts(db: Db) {
  await db.schema
    .createTable("securityGroupFailureHosts")
    .addColumn("hostUuid", "varchar(32)", (column) =>
      column.primaryKey().references("hosts.uuid").onDelete("cascade"),
    )
    .addColumn("attempts", "integer", (column) => column.notNull())
    .addColumn("lastError", "text", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .execute();
}
