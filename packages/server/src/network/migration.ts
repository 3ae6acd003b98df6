import { type Db, resourceColumns, resourceIndexes } from "../db/migration-helpers.js";
import { FLAT_PROVIDER, SECURITY_GROUP_PROVIDER } from "./providers.js";

async function createL2(db: Db) {
  await resourceColumns(db.schema.createTable("l2Networks"))
    .addColumn("zoneUuid", "varchar(32)", (column) => column.notNull().references("zones.uuid"))
    .addColumn("type", "varchar(32)", (column) => column.notNull())
    .addColumn("physicalInterface", "varchar(15)")
    .addColumn("vlan", "integer")
    .addColumn("vni", "integer")
    .addColumn("poolUuid", "varchar(32)", (column) => column.references("l2Networks.uuid"))
    .addColumn("vtepCidr", "varchar(18)")
    .execute();
  await resourceIndexes(db, "l2Networks");
  await db.schema.createIndex("l2Networks_zone").on("l2Networks").column("zoneUuid").execute();
  // One VNI per pool, enforced by the database so two creates cannot take the same one.
  await db.schema
    .createIndex("l2Networks_pool_vni")
    .on("l2Networks")
    .columns(["poolUuid", "vni"])
    .unique()
    .execute();

  await db.schema
    .createTable("l2NetworkClusterRefs")
    .addColumn("l2NetworkUuid", "varchar(32)", (column) =>
      column.notNull().references("l2Networks.uuid").onDelete("cascade"),
    )
    .addColumn("clusterUuid", "varchar(32)", (column) =>
      column.notNull().references("clusters.uuid").onDelete("cascade"),
    )
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("l2NetworkClusterRefs_pk", ["l2NetworkUuid", "clusterUuid"])
    .execute();
  await db.schema
    .createIndex("l2NetworkClusterRefs_cluster")
    .on("l2NetworkClusterRefs")
    .column("clusterUuid")
    .execute();

  await resourceColumns(db.schema.createTable("vniRanges"))
    .addColumn("l2NetworkUuid", "varchar(32)", (column) =>
      column.notNull().references("l2Networks.uuid").onDelete("cascade"),
    )
    .addColumn("startVni", "integer", (column) => column.notNull())
    .addColumn("endVni", "integer", (column) => column.notNull())
    .execute();
  await resourceIndexes(db, "vniRanges");

  await db.schema
    .createTable("vteps")
    .addColumn("poolUuid", "varchar(32)", (column) =>
      column.notNull().references("l2Networks.uuid").onDelete("cascade"),
    )
    .addColumn("hostUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("clusterUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("vtepIp", "varchar(15)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("vteps_pk", ["poolUuid", "hostUuid"])
    .execute();
}

async function createL3(db: Db) {
  await resourceColumns(db.schema.createTable("l3Networks"))
    .addColumn("zoneUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("l2NetworkUuid", "varchar(32)", (column) =>
      column.notNull().references("l2Networks.uuid"),
    )
    .addColumn("type", "varchar(32)", (column) => column.notNull())
    .addColumn("category", "varchar(16)", (column) => column.notNull())
    .addColumn("ipVersion", "integer", (column) => column.notNull())
    .addColumn("dnsDomain", "varchar(255)")
    .addColumn("state", "varchar(16)", (column) => column.notNull())
    .addColumn("system", "integer", (column) => column.notNull())
    .execute();
  await resourceIndexes(db, "l3Networks");
  await db.schema.createIndex("l3Networks_l2").on("l3Networks").column("l2NetworkUuid").execute();

  await db.schema
    .createTable("l3Dns")
    .addColumn("l3NetworkUuid", "varchar(32)", (column) =>
      column.notNull().references("l3Networks.uuid").onDelete("cascade"),
    )
    .addColumn("dns", "varchar(64)", (column) => column.notNull())
    .addColumn("position", "integer", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("l3Dns_pk", ["l3NetworkUuid", "dns"])
    .execute();

  await resourceColumns(db.schema.createTable("ipRanges"))
    .addColumn("l3NetworkUuid", "varchar(32)", (column) =>
      column.notNull().references("l3Networks.uuid"),
    )
    .addColumn("startIp", "varchar(64)", (column) => column.notNull())
    .addColumn("endIp", "varchar(64)", (column) => column.notNull())
    .addColumn("netmask", "varchar(64)", (column) => column.notNull())
    .addColumn("gateway", "varchar(64)", (column) => column.notNull())
    .addColumn("networkCidr", "varchar(64)", (column) => column.notNull())
    .addColumn("prefixLen", "integer", (column) => column.notNull())
    .addColumn("ipVersion", "integer", (column) => column.notNull())
    .addColumn("startLong", "bigint", (column) => column.notNull())
    .addColumn("endLong", "bigint", (column) => column.notNull())
    .execute();
  await resourceIndexes(db, "ipRanges");
  await db.schema.createIndex("ipRanges_l3").on("ipRanges").column("l3NetworkUuid").execute();

  await db.schema
    .createTable("usedIps")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("l3NetworkUuid", "varchar(32)", (column) =>
      column.notNull().references("l3Networks.uuid"),
    )
    .addColumn("ipRangeUuid", "varchar(32)", (column) =>
      column.notNull().references("ipRanges.uuid"),
    )
    .addColumn("ip", "varchar(64)", (column) => column.notNull())
    .addColumn("ipInLong", "bigint", (column) => column.notNull())
    .addColumn("netmask", "varchar(64)", (column) => column.notNull())
    .addColumn("gateway", "varchar(64)", (column) => column.notNull())
    .addColumn("usedFor", "varchar(16)", (column) => column.notNull())
    .addColumn("vmNicUuid", "varchar(32)")
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addUniqueConstraint("usedIps_l3_ip", ["l3NetworkUuid", "ip"])
    .execute();
  await db.schema.createIndex("usedIps_range").on("usedIps").column("ipRangeUuid").execute();
}

async function createServices(db: Db) {
  await db.schema
    .createTable("networkServiceProviders")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("name", "varchar(255)", (column) => column.notNull())
    .addColumn("description", "text", (column) => column.notNull())
    .addColumn("type", "varchar(64)", (column) => column.notNull())
    .addColumn("networkServiceTypes", "text", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .execute();

  const stamp = new Date().toISOString();
  await db
    .insertInto("networkServiceProviders")
    .values(
      [FLAT_PROVIDER, SECURITY_GROUP_PROVIDER].map((provider) => ({
        uuid: provider.uuid,
        name: provider.name,
        description: provider.description,
        type: provider.type,
        networkServiceTypes: JSON.stringify(provider.networkServiceTypes),
        createDate: stamp,
        lastOpDate: stamp,
      })),
    )
    .execute();

  await db.schema
    .createTable("l3NetworkServiceRefs")
    .addColumn("l3NetworkUuid", "varchar(32)", (column) =>
      column.notNull().references("l3Networks.uuid").onDelete("cascade"),
    )
    .addColumn("networkServiceProviderUuid", "varchar(32)", (column) =>
      column.notNull().references("networkServiceProviders.uuid"),
    )
    .addColumn("networkServiceType", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("l3NetworkServiceRefs_pk", [
      "l3NetworkUuid",
      "networkServiceProviderUuid",
      "networkServiceType",
    ])
    .execute();
}

async function createNics(db: Db) {
  await db.schema
    .createTable("vmNics")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("vmInstanceUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("l3NetworkUuid", "varchar(32)", (column) =>
      column.notNull().references("l3Networks.uuid"),
    )
    .addColumn("usedIpUuid", "varchar(32)")
    .addColumn("ip", "varchar(64)", (column) => column.notNull())
    .addColumn("mac", "varchar(17)", (column) => column.notNull().unique())
    .addColumn("netmask", "varchar(64)", (column) => column.notNull())
    .addColumn("gateway", "varchar(64)", (column) => column.notNull())
    .addColumn("deviceId", "integer", (column) => column.notNull())
    .addColumn("internalName", "varchar(15)", (column) => column.notNull())
    .addColumn("driverType", "varchar(32)", (column) => column.notNull())
    .addColumn("type", "varchar(32)", (column) => column.notNull())
    .addColumn("accountUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .execute();
  await db.schema.createIndex("vmNics_vm").on("vmNics").column("vmInstanceUuid").execute();
  await db.schema.createIndex("vmNics_l3").on("vmNics").column("l3NetworkUuid").execute();
  await db.schema.createIndex("vmNics_account").on("vmNics").column("accountUuid").execute();

  await db.schema
    .createTable("vmNicHostRefs")
    .addColumn("nicUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("hostUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("vmInstanceUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("mac", "varchar(17)", (column) => column.notNull())
    .addColumn("ip", "varchar(64)", (column) => column.notNull())
    .addColumn("l3NetworkUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("l2NetworkUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("vmNicHostRefs_pk", ["nicUuid", "hostUuid"])
    .execute();
  await db.schema
    .createIndex("vmNicHostRefs_host")
    .on("vmNicHostRefs")
    .columns(["hostUuid", "l3NetworkUuid"])
    .execute();
}

/** Migration `0004_network`: L2 and L3 networks, IP ranges and addresses, services, VM NICs. */
export async function createNetworkTables(db: Db) {
  await createL2(db);
  await createL3(db);
  await createServices(db);
  await createNics(db);
}
