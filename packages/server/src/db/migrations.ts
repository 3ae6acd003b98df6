import { type Migration, sql } from "kysely";
import { createHostCapacityMemoryIndex } from "../compute/hosts/capacity-index-migration.js";
import { createHostCleanups } from "../compute/hosts/cleanups-migration.js";
import { createVmCreationSpecs } from "../compute/vms/creation-spec-migration.js";
import { createMonitoringTables } from "../monitoring/migration.js";
import { createNetworkTables } from "../network/migration.js";
import {
  createSecurityGroupFailureHosts,
  createSecurityGroupTables,
} from "../network/security-groups-migration.js";
import { createUsedIpIndexes } from "../network/used-ip-indexes-migration.js";
import { createSimulatorTables } from "../simulator/migration.js";
import { createVmCdRomTable } from "../storage/cdrom-migration.js";
import type { DialectName } from "./connect.js";
import { type Db, resourceColumns, resourceIndexes, type Table } from "./migration-helpers.js";
import { createReadIndexes } from "./read-indexes-migration.js";

function serialId(dialect: DialectName) {
  return (table: Table): Table =>
    dialect === "postgres"
      ? table.addColumn("id", "bigserial", (column) => column.primaryKey())
      : table.addColumn("id", "integer", (column) => column.primaryKey().autoIncrement());
}

async function createCore(db: Db, dialect: DialectName) {
  await db.schema
    .createTable("resources")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("resourceType", "varchar(64)", (column) => column.notNull())
    .addColumn("name", "varchar(255)")
    .addColumn("accountUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .execute();
  await db.schema
    .createIndex("resources_account")
    .on("resources")
    .columns(["accountUuid", "resourceType"])
    .execute();

  await resourceColumns(db.schema.createTable("zones"))
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("type", "varchar(32)", (column) => column.notNull())
    .execute();
  await resourceIndexes(db, "zones");

  await resourceColumns(db.schema.createTable("clusters"))
    .addColumn("zoneUuid", "varchar(32)", (column) => column.notNull().references("zones.uuid"))
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("hypervisorType", "varchar(32)", (column) => column.notNull())
    .addColumn("type", "varchar(32)", (column) => column.notNull())
    .execute();
  await resourceIndexes(db, "clusters");
  await db.schema.createIndex("clusters_zone").on("clusters").column("zoneUuid").execute();

  await resourceColumns(db.schema.createTable("instanceOfferings"))
    .addColumn("cpuNum", "integer", (column) => column.notNull())
    .addColumn("cpuSpeed", "integer", (column) => column.notNull())
    .addColumn("memorySize", "bigint", (column) => column.notNull())
    .addColumn("allocatorStrategy", "varchar(255)", (column) => column.notNull())
    .addColumn("sortKey", "integer", (column) => column.notNull())
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("type", "varchar(32)", (column) => column.notNull())
    .execute();
  await resourceIndexes(db, "instanceOfferings");

  await resourceColumns(db.schema.createTable("diskOfferings"))
    .addColumn("diskSize", "bigint", (column) => column.notNull())
    .addColumn("allocatorStrategy", "varchar(255)", (column) => column.notNull())
    .addColumn("sortKey", "integer", (column) => column.notNull())
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("type", "varchar(32)", (column) => column.notNull())
    .execute();
  await resourceIndexes(db, "diskOfferings");

  await createIdentity(db);
  await createPlatform(db, dialect);
}

async function createIdentity(db: Db) {
  await resourceColumns(db.schema.createTable("accounts"))
    .addColumn("type", "varchar(32)", (column) => column.notNull())
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("passwordHash", "text", (column) => column.notNull())
    .addUniqueConstraint("accounts_name_unique", ["name"])
    .execute();
  await resourceIndexes(db, "accounts");

  await resourceColumns(db.schema.createTable("users"))
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("passwordHash", "text", (column) => column.notNull())
    .addUniqueConstraint("users_account_name_unique", ["accountUuid", "name"])
    .execute();
  await resourceIndexes(db, "users");

  await db.schema
    .createTable("sessions")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("accountUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("userUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("userType", "varchar(32)", (column) => column.notNull())
    .addColumn("expiredDate", "varchar(32)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .execute();
  await db.schema
    .createIndex("sessions_user")
    .on("sessions")
    .columns(["userUuid", "createDate"])
    .execute();
  await db.schema.createIndex("sessions_expired").on("sessions").column("expiredDate").execute();

  await db.schema
    .createTable("quotas")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("identityUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("identityType", "varchar(32)", (column) => column.notNull())
    .addColumn("name", "varchar(255)", (column) => column.notNull())
    .addColumn("value", "bigint", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .addUniqueConstraint("quotas_identity_name_unique", ["identityUuid", "name"])
    .execute();

  await db.schema
    .createTable("audits")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("accountUuid", "varchar(32)")
    .addColumn("userUuid", "varchar(32)")
    .addColumn("apiName", "varchar(128)", (column) => column.notNull())
    .addColumn("resourceUuid", "varchar(255)")
    .addColumn("requestId", "varchar(64)", (column) => column.notNull())
    .addColumn("jobUuid", "varchar(32)")
    .addColumn("success", "integer")
    .addColumn("error", "text")
    .addColumn("clientIp", "varchar(64)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("finishDate", "varchar(32)")
    .execute();
  await db.schema.createIndex("audits_create_date").on("audits").column("createDate").execute();
  await db.schema.createIndex("audits_job").on("audits").column("jobUuid").execute();
}

async function createPlatform(db: Db, dialect: DialectName) {
  await db.schema
    .createTable("globalConfigs")
    .addColumn("category", "varchar(64)", (column) => column.notNull())
    .addColumn("name", "varchar(128)", (column) => column.notNull())
    .addColumn("value", "text", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("global_configs_pk", ["category", "name"])
    .execute();

  await db.schema
    .createTable("resourceConfigs")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("resourceUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("resourceType", "varchar(64)", (column) => column.notNull())
    .addColumn("category", "varchar(64)", (column) => column.notNull())
    .addColumn("name", "varchar(128)", (column) => column.notNull())
    .addColumn("value", "text", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .addUniqueConstraint("resource_configs_unique", ["resourceUuid", "category", "name"])
    .execute();

  await db.schema
    .createTable("tags")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("resourceUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("resourceType", "varchar(64)", (column) => column.notNull())
    .addColumn("tag", "text", (column) => column.notNull())
    .addColumn("type", "varchar(16)", (column) => column.notNull())
    .addColumn("inherent", "integer", (column) => column.notNull().defaultTo(0))
    .addColumn("accountUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .execute();
  await db.schema
    .createIndex("tags_resource")
    .on("tags")
    .columns(["resourceUuid", "type"])
    .execute();
  await db.schema.createIndex("tags_tag").on("tags").columns(["type", "tag"]).execute();

  await createJobsAndEvents(db, dialect);

  await resourceColumns(db.schema.createTable("webHooks"))
    .addColumn("url", "text", (column) => column.notNull())
    .addColumn("type", "varchar(64)", (column) => column.notNull())
    .addColumn("opaque", "text")
    .addColumn("secret", "text")
    .execute();
  await resourceIndexes(db, "webHooks");

  await db.schema
    .createTable("managementNodes")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("hostName", "varchar(255)", (column) => column.notNull())
    .addColumn("port", "integer", (column) => column.notNull())
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("version", "varchar(64)", (column) => column.notNull())
    .addColumn("heartBeat", "varchar(32)", (column) => column.notNull())
    .addColumn("joinDate", "varchar(32)", (column) => column.notNull())
    .execute();
}

async function createJobsAndEvents(db: Db, dialect: DialectName) {
  await db.schema
    .createTable("apiJobs")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("apiName", "varchar(128)", (column) => column.notNull())
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("accountUuid", "varchar(32)")
    .addColumn("userUuid", "varchar(32)")
    .addColumn("resourceUuid", "varchar(255)")
    .addColumn("request", "text", (column) => column.notNull())
    .addColumn("result", "text")
    .addColumn("httpStatus", "integer")
    .addColumn("progress", "integer")
    .addColumn("progressText", "text")
    .addColumn("managementNodeUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("idempotencyKey", "varchar(255)")
    .addColumn("requestHash", "varchar(64)")
    .addColumn("webhookUrl", "text")
    .addColumn("cancelRequested", "integer", (column) => column.notNull().defaultTo(0))
    .addColumn("deadline", "varchar(32)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .addColumn("finishDate", "varchar(32)")
    .addUniqueConstraint("api_jobs_idempotency_unique", ["accountUuid", "idempotencyKey"])
    .execute();
  await db.schema
    .createIndex("api_jobs_state")
    .on("apiJobs")
    .columns(["state", "deadline"])
    .execute();
  await db.schema.createIndex("api_jobs_finish").on("apiJobs").column("finishDate").execute();

  await db.schema
    .createTable("workflows")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("name", "varchar(128)", (column) => column.notNull())
    .addColumn("jobUuid", "varchar(32)")
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("data", "text", (column) => column.notNull())
    .addColumn("completedSteps", "integer", (column) => column.notNull())
    .addColumn("managementNodeUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("error", "text")
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .execute();
  await db.schema.createIndex("workflows_state").on("workflows").column("state").execute();

  await serialId(dialect)(db.schema.createTable("events"))
    .addColumn("path", "varchar(255)", (column) => column.notNull())
    .addColumn("resourceUuid", "varchar(32)")
    .addColumn("accountUuid", "varchar(32)")
    .addColumn("content", "text", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .execute();
  await db.schema.createIndex("events_create_date").on("events").column("createDate").execute();

  await serialId(dialect)(db.schema.createTable("deliveries"))
    .addColumn("url", "text", (column) => column.notNull())
    .addColumn("headers", "text", (column) => column.notNull())
    .addColumn("body", "text", (column) => column.notNull())
    .addColumn("attempts", "integer", (column) => column.notNull())
    .addColumn("nextAttemptDate", "varchar(32)", (column) => column.notNull())
    .addColumn("state", "varchar(16)", (column) => column.notNull())
    .addColumn("lastError", "text")
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .execute();
  await db.schema
    .createIndex("deliveries_pending")
    .on("deliveries")
    .columns(["state", "nextAttemptDate"])
    .execute();
}

async function createHosts(db: Db) {
  await resourceColumns(db.schema.createTable("hosts"))
    .addColumn("zoneUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("clusterUuid", "varchar(32)", (column) =>
      column.notNull().references("clusters.uuid"),
    )
    .addColumn("managementIp", "varchar(253)", (column) => column.notNull().unique())
    .addColumn("hypervisorType", "varchar(32)", (column) => column.notNull())
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("status", "varchar(32)", (column) => column.notNull())
    .addColumn("architecture", "varchar(32)")
    .addColumn("username", "varchar(64)")
    .addColumn("sshPort", "integer", (column) => column.notNull())
    .addColumn("credential", "text")
    .addColumn("agentSecret", "text", (column) => column.notNull())
    .addColumn("agentPort", "integer", (column) => column.notNull())
    .addColumn("facts", "text")
    .addColumn("accelerator", "varchar(16)")
    .addColumn("lastError", "text")
    .execute();
  await resourceIndexes(db, "hosts");
  await db.schema.createIndex("hosts_cluster").on("hosts").column("clusterUuid").execute();
  await db.schema.createIndex("hosts_zone").on("hosts").column("zoneUuid").execute();

  await db.schema
    .createTable("hostCapacities")
    .addColumn("uuid", "varchar(32)", (column) =>
      column.primaryKey().references("hosts.uuid").onDelete("cascade"),
    )
    .addColumn("totalCpu", "bigint", (column) => column.notNull())
    .addColumn("availableCpu", "bigint", (column) => column.notNull())
    .addColumn("cpuNum", "integer", (column) => column.notNull())
    .addColumn("totalMemory", "bigint", (column) => column.notNull())
    .addColumn("availableMemory", "bigint", (column) => column.notNull())
    .addColumn("totalPhysicalMemory", "bigint", (column) => column.notNull())
    .addColumn("availablePhysicalMemory", "bigint", (column) => column.notNull())
    .execute();
}

async function createVms(db: Db) {
  await resourceColumns(db.schema.createTable("vmInstances"))
    .addColumn("zoneUuid", "varchar(32)")
    .addColumn("clusterUuid", "varchar(32)")
    .addColumn("hostUuid", "varchar(32)")
    .addColumn("lastHostUuid", "varchar(32)")
    .addColumn("imageUuid", "varchar(32)")
    .addColumn("instanceOfferingUuid", "varchar(32)")
    .addColumn("rootVolumeUuid", "varchar(32)")
    .addColumn("defaultL3NetworkUuid", "varchar(32)")
    .addColumn("type", "varchar(32)", (column) => column.notNull())
    .addColumn("hypervisorType", "varchar(32)", (column) => column.notNull())
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("cpuNum", "integer", (column) => column.notNull())
    .addColumn("memorySize", "bigint", (column) => column.notNull())
    .addColumn("platform", "varchar(32)", (column) => column.notNull())
    .addColumn("allocatorStrategy", "varchar(128)")
    .addColumn("expungeDate", "varchar(32)")
    .execute();
  await resourceIndexes(db, "vmInstances");
  await db.schema
    .createIndex("vm_instances_host")
    .on("vmInstances")
    .columns(["hostUuid", "state"])
    .execute();
  await db.schema.createIndex("vm_instances_state").on("vmInstances").column("state").execute();
}

async function createStorage(db: Db) {
  await createBackupStorage(db);
  await createImages(db);
  await createPrimaryStorage(db);
  await createVolumes(db);
}

async function createBackupStorage(db: Db) {
  await resourceColumns(db.schema.createTable("backupStorages"))
    .addColumn("type", "varchar(64)", (column) => column.notNull())
    .addColumn("url", "varchar(2048)", (column) => column.notNull())
    .addColumn("hostname", "varchar(253)", (column) => column.notNull())
    .addColumn("hostUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("status", "varchar(32)", (column) => column.notNull())
    .addColumn("totalCapacity", "bigint", (column) => column.notNull())
    .addColumn("availableCapacity", "bigint", (column) => column.notNull())
    .addColumn("lastError", "text")
    .execute();
  await resourceIndexes(db, "backupStorages");

  await db.schema
    .createTable("backupStorageZoneRefs")
    .addColumn("backupStorageUuid", "varchar(32)", (column) =>
      column.notNull().references("backupStorages.uuid").onDelete("cascade"),
    )
    .addColumn("zoneUuid", "varchar(32)", (column) =>
      column.notNull().references("zones.uuid").onDelete("cascade"),
    )
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("backupStorageZoneRefs_pk", ["backupStorageUuid", "zoneUuid"])
    .execute();
  await db.schema
    .createIndex("backupStorageZoneRefs_zone")
    .on("backupStorageZoneRefs")
    .column("zoneUuid")
    .execute();
}

async function createImages(db: Db) {
  await resourceColumns(db.schema.createTable("images"))
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("status", "varchar(32)", (column) => column.notNull())
    .addColumn("url", "varchar(2048)", (column) => column.notNull())
    .addColumn("mediaType", "varchar(32)", (column) => column.notNull())
    .addColumn("format", "varchar(16)", (column) => column.notNull())
    .addColumn("platform", "varchar(32)", (column) => column.notNull())
    .addColumn("guestOsType", "varchar(255)")
    .addColumn("size", "bigint", (column) => column.notNull())
    .addColumn("actualSize", "bigint", (column) => column.notNull())
    .addColumn("md5", "varchar(32)")
    .addColumn("sha256", "varchar(64)")
    .addColumn("lastError", "text")
    .execute();
  await resourceIndexes(db, "images");

  await db.schema
    .createTable("imageBackupStorageRefs")
    .addColumn("imageUuid", "varchar(32)", (column) =>
      column.notNull().references("images.uuid").onDelete("cascade"),
    )
    .addColumn("backupStorageUuid", "varchar(32)", (column) =>
      column.notNull().references("backupStorages.uuid").onDelete("cascade"),
    )
    .addColumn("status", "varchar(32)", (column) => column.notNull())
    .addColumn("installPath", "varchar(2048)")
    .addColumn("lastError", "text")
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("imageBackupStorageRefs_pk", ["imageUuid", "backupStorageUuid"])
    .execute();
  await db.schema
    .createIndex("imageBackupStorageRefs_bs")
    .on("imageBackupStorageRefs")
    .column("backupStorageUuid")
    .execute();
}

async function createPrimaryStorage(db: Db) {
  await resourceColumns(db.schema.createTable("primaryStorages"))
    .addColumn("type", "varchar(64)", (column) => column.notNull())
    .addColumn("url", "varchar(2048)", (column) => column.notNull())
    .addColumn("zoneUuid", "varchar(32)", (column) => column.notNull().references("zones.uuid"))
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("status", "varchar(32)", (column) => column.notNull())
    .addColumn("totalCapacity", "bigint", (column) => column.notNull())
    .addColumn("availableCapacity", "bigint", (column) => column.notNull())
    .addColumn("totalPhysicalCapacity", "bigint", (column) => column.notNull())
    .addColumn("availablePhysicalCapacity", "bigint", (column) => column.notNull())
    .addColumn("lastError", "text")
    .execute();
  await resourceIndexes(db, "primaryStorages");

  await db.schema
    .createTable("primaryStorageClusterRefs")
    .addColumn("primaryStorageUuid", "varchar(32)", (column) =>
      column.notNull().references("primaryStorages.uuid").onDelete("cascade"),
    )
    .addColumn("clusterUuid", "varchar(32)", (column) =>
      column.notNull().references("clusters.uuid").onDelete("cascade"),
    )
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addPrimaryKeyConstraint("primaryStorageClusterRefs_pk", ["primaryStorageUuid", "clusterUuid"])
    .execute();
  await db.schema
    .createIndex("primaryStorageClusterRefs_cluster")
    .on("primaryStorageClusterRefs")
    .column("clusterUuid")
    .execute();

  await db.schema
    .createTable("localStorageHostRefs")
    .addColumn("primaryStorageUuid", "varchar(32)", (column) =>
      column.notNull().references("primaryStorages.uuid").onDelete("cascade"),
    )
    .addColumn("hostUuid", "varchar(32)", (column) =>
      column.notNull().references("hosts.uuid").onDelete("cascade"),
    )
    .addColumn("totalCapacity", "bigint", (column) => column.notNull())
    .addColumn("availableCapacity", "bigint", (column) => column.notNull())
    .addColumn("totalPhysicalCapacity", "bigint", (column) => column.notNull())
    .addColumn("availablePhysicalCapacity", "bigint", (column) => column.notNull())
    .addPrimaryKeyConstraint("localStorageHostRefs_pk", ["primaryStorageUuid", "hostUuid"])
    .execute();

  await db.schema
    .createTable("imageCaches")
    .addColumn("uuid", "varchar(32)", (column) => column.primaryKey())
    .addColumn("primaryStorageUuid", "varchar(32)", (column) =>
      column.notNull().references("primaryStorages.uuid").onDelete("cascade"),
    )
    .addColumn("hostUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("imageUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("installUrl", "varchar(2048)", (column) => column.notNull())
    .addColumn("size", "bigint", (column) => column.notNull())
    .addColumn("actualSize", "bigint", (column) => column.notNull())
    .addColumn("md5", "varchar(32)")
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("createDate", "varchar(32)", (column) => column.notNull())
    .addColumn("lastOpDate", "varchar(32)", (column) => column.notNull())
    .addUniqueConstraint("imageCaches_unique", ["primaryStorageUuid", "hostUuid", "imageUuid"])
    .execute();
}

async function createVolumes(db: Db) {
  await resourceColumns(db.schema.createTable("volumes"))
    .addColumn("type", "varchar(16)", (column) => column.notNull())
    .addColumn("vmInstanceUuid", "varchar(32)")
    .addColumn("primaryStorageUuid", "varchar(32)", (column) =>
      column.references("primaryStorages.uuid"),
    )
    .addColumn("hostUuid", "varchar(32)")
    .addColumn("rootImageUuid", "varchar(32)")
    .addColumn("diskOfferingUuid", "varchar(32)")
    .addColumn("format", "varchar(16)", (column) => column.notNull())
    .addColumn("size", "bigint", (column) => column.notNull())
    .addColumn("actualSize", "bigint", (column) => column.notNull())
    .addColumn("reservedCapacity", "bigint", (column) => column.notNull())
    .addColumn("deviceId", "integer")
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("status", "varchar(32)", (column) => column.notNull())
    .addColumn("installPath", "varchar(2048)")
    .addColumn("topFileUuid", "varchar(32)")
    .addColumn("lastError", "text")
    .execute();
  await resourceIndexes(db, "volumes");
  await db.schema.createIndex("volumes_vm").on("volumes").column("vmInstanceUuid").execute();
  await db.schema.createIndex("volumes_ps").on("volumes").column("primaryStorageUuid").execute();

  await resourceColumns(db.schema.createTable("volumeSnapshots"))
    .addColumn("volumeUuid", "varchar(32)", (column) =>
      column.notNull().references("volumes.uuid").onDelete("cascade"),
    )
    .addColumn("primaryStorageUuid", "varchar(32)", (column) => column.notNull())
    .addColumn("parentUuid", "varchar(32)")
    .addColumn("volumeType", "varchar(16)", (column) => column.notNull())
    .addColumn("primaryStorageInstallPath", "varchar(2048)", (column) => column.notNull())
    .addColumn("size", "bigint", (column) => column.notNull())
    .addColumn("state", "varchar(32)", (column) => column.notNull())
    .addColumn("status", "varchar(32)", (column) => column.notNull())
    .addColumn("latest", "integer", (column) => column.notNull())
    .execute();
  await resourceIndexes(db, "volumeSnapshots");
  await db.schema
    .createIndex("volumeSnapshots_volume")
    .on("volumeSnapshots")
    .column("volumeUuid")
    .execute();
}

/** Returns the forward-only migration set, in order. Never edit a migration that has shipped. */
export function migrations(dialect: DialectName): Record<string, Migration> {
  return {
    "0001_core": { up: (db) => createCore(db, dialect) },
    "0002_hosts": { up: (db) => createHosts(db) },
    "0005_vms": { up: (db) => createVms(db) },
    "0004_network": { up: (db) => createNetworkTables(db) },
    "0003_storage": { up: (db) => createStorage(db) },
    "0006_security_groups": { up: (db) => createSecurityGroupTables(db) },
    "0012_host_cleanups": { up: (db) => createHostCleanups(db) },
    "0010_volume_attach": { up: (db) => createVmCdRomTable(db) },
    "0009_monitoring": { up: (db) => createMonitoringTables(db, dialect) },
    "0011_read_indexes": { up: (db) => createReadIndexes(db) },
    "0007_simulator": { up: (db) => createSimulatorTables(db) },
    "0013_vm_creation_specs": { up: (db) => createVmCreationSpecs(db) },
    "0014_security_group_failure_hosts": { up: (db) => createSecurityGroupFailureHosts(db) },
    "0015_used_ip_indexes": { up: (db) => createUsedIpIndexes(db) },
    "0016_host_capacity_memory_index": { up: (db) => createHostCapacityMemoryIndex(db) },
  };
}

/** Checks that the database responds; used by the readiness route. */
export async function ping(db: Db) {
  await sql`select 1`.execute(db);
}
