import { groupBy } from "../core/collections.js";
import {
  commonFields,
  commonInventory,
  defineResource,
  extendResource,
  extendWithChildren,
} from "../resources/registry.js";

/** Reads a bigint column, which PostgreSQL returns as a string. */
const num = (value: unknown) => Number(value ?? 0);

defineResource({
  type: "BackupStorage",
  table: "backupStorages",
  key: "uuid",
  visibility: "admin",
  taggable: true,
  fields: {
    ...commonFields,
    type: "string",
    url: "string",
    hostname: "string",
    state: "string",
    status: "string",
    totalCapacity: "number",
    availableCapacity: "number",
  },
  async enrich(db, rows) {
    if (rows.length === 0) {
      return rows;
    }

    const refs = await db
      .selectFrom("backupStorageZoneRefs")
      .selectAll()
      .where(
        "backupStorageUuid",
        "in",
        rows.map((row) => String(row.uuid)),
      )
      .execute();
    return rows.map((row) => ({
      ...row,
      attachedZoneUuids: refs
        .filter((ref) => ref.backupStorageUuid === row.uuid)
        .map((ref) => ref.zoneUuid),
    }));
  },
  toInventory: (row) =>
    commonInventory(row, {
      type: row.type,
      url: row.url,
      hostname: row.hostname,
      state: row.state,
      status: row.status,
      totalCapacity: num(row.totalCapacity),
      availableCapacity: num(row.availableCapacity),
      attachedZoneUuids: row.attachedZoneUuids ?? [],
      lastError: row.lastError ?? null,
    }),
});

defineResource({
  type: "Image",
  table: "images",
  key: "uuid",
  visibility: "shared",
  taggable: true,
  fields: {
    ...commonFields,
    state: "string",
    status: "string",
    url: "string",
    mediaType: "string",
    format: "string",
    platform: "string",
    size: "number",
    actualSize: "number",
    md5: "string",
  },
  async enrich(db, rows) {
    if (rows.length === 0) {
      return rows;
    }

    const refs = await db
      .selectFrom("imageBackupStorageRefs")
      .selectAll()
      .where(
        "imageUuid",
        "in",
        rows.map((row) => String(row.uuid)),
      )
      .execute();
    return rows.map((row) => ({
      ...row,
      backupStorageRefs: refs
        .filter((ref) => ref.imageUuid === row.uuid)
        .map((ref) => ({
          imageUuid: ref.imageUuid,
          backupStorageUuid: ref.backupStorageUuid,
          status: ref.status,
          installPath: ref.installPath,
          lastError: ref.lastError,
          createDate: ref.createDate,
          lastOpDate: ref.lastOpDate,
        })),
    }));
  },
  toInventory: (row) =>
    commonInventory(row, {
      state: row.state,
      status: row.status,
      url: row.url,
      mediaType: row.mediaType,
      format: row.format,
      platform: row.platform,
      guestOsType: row.guestOsType ?? null,
      size: num(row.size),
      actualSize: num(row.actualSize),
      md5Sum: row.md5 ?? null,
      sha256: row.sha256 ?? null,
      system: false,
      backupStorageRefs: row.backupStorageRefs ?? [],
      lastError: row.lastError ?? null,
    }),
});

defineResource({
  type: "PrimaryStorage",
  table: "primaryStorages",
  key: "uuid",
  visibility: "admin",
  taggable: true,
  fields: {
    ...commonFields,
    type: "string",
    url: "string",
    zoneUuid: "string",
    state: "string",
    status: "string",
    totalCapacity: "number",
    availableCapacity: "number",
    totalPhysicalCapacity: "number",
    availablePhysicalCapacity: "number",
  },
  relations: {
    zone: { resource: "Zone", local: "zoneUuid", foreign: "uuid" },
  },
  async enrich(db, rows) {
    if (rows.length === 0) {
      return rows;
    }

    const refs = await db
      .selectFrom("primaryStorageClusterRefs")
      .selectAll()
      .where(
        "primaryStorageUuid",
        "in",
        rows.map((row) => String(row.uuid)),
      )
      .execute();
    return rows.map((row) => ({
      ...row,
      attachedClusterUuids: refs
        .filter((ref) => ref.primaryStorageUuid === row.uuid)
        .map((ref) => ref.clusterUuid),
    }));
  },
  toInventory: (row) =>
    commonInventory(row, {
      type: row.type,
      url: row.url,
      mountPath: row.url,
      zoneUuid: row.zoneUuid,
      state: row.state,
      status: row.status,
      totalCapacity: num(row.totalCapacity),
      availableCapacity: num(row.availableCapacity),
      totalPhysicalCapacity: num(row.totalPhysicalCapacity),
      availablePhysicalCapacity: num(row.availablePhysicalCapacity),
      attachedClusterUuids: row.attachedClusterUuids ?? [],
      lastError: row.lastError ?? null,
    }),
});

defineResource({
  type: "ImageCache",
  table: "imageCaches",
  key: "uuid",
  visibility: "admin",
  fields: {
    uuid: "string",
    primaryStorageUuid: "string",
    hostUuid: "string",
    imageUuid: "string",
    installUrl: "string",
    size: "number",
    state: "string",
    createDate: "date",
    lastOpDate: "date",
  },
  toInventory: (row) => ({
    id: row.uuid,
    uuid: row.uuid,
    primaryStorageUuid: row.primaryStorageUuid,
    hostUuid: row.hostUuid || null,
    imageUuid: row.imageUuid,
    installUrl: row.installUrl,
    size: num(row.size),
    actualSize: num(row.actualSize),
    md5sum: row.md5 ?? null,
    state: row.state,
    createDate: row.createDate,
    lastOpDate: row.lastOpDate,
  }),
});

defineResource({
  type: "Volume",
  table: "volumes",
  key: "uuid",
  visibility: "owner",
  taggable: true,
  fields: {
    ...commonFields,
    type: "string",
    vmInstanceUuid: "string",
    primaryStorageUuid: "string",
    rootImageUuid: "string",
    diskOfferingUuid: "string",
    format: "string",
    size: "number",
    actualSize: "number",
    deviceId: "number",
    state: "string",
    status: "string",
  },
  relations: {
    primaryStorage: { resource: "PrimaryStorage", local: "primaryStorageUuid", foreign: "uuid" },
  },
  toInventory: (row) =>
    commonInventory(row, {
      type: row.type,
      vmInstanceUuid: row.vmInstanceUuid ?? null,
      primaryStorageUuid: row.primaryStorageUuid ?? null,
      rootImageUuid: row.rootImageUuid ?? null,
      diskOfferingUuid: row.diskOfferingUuid ?? null,
      format: row.format,
      size: num(row.size),
      actualSize: num(row.actualSize),
      deviceId: row.deviceId ?? null,
      state: row.state,
      status: row.status,
      installPath: row.installPath ?? null,
      isShareable: false,
      lastError: row.lastError ?? null,
    }),
});

defineResource({
  type: "VolumeSnapshot",
  table: "volumeSnapshots",
  key: "uuid",
  visibility: "owner",
  taggable: true,
  fields: {
    ...commonFields,
    volumeUuid: "string",
    primaryStorageUuid: "string",
    parentUuid: "string",
    volumeType: "string",
    size: "number",
    state: "string",
    status: "string",
  },
  relations: {
    volume: { resource: "Volume", local: "volumeUuid", foreign: "uuid" },
  },
  toInventory: (row) =>
    commonInventory(row, {
      volumeUuid: row.volumeUuid,
      primaryStorageUuid: row.primaryStorageUuid,
      parentUuid: row.parentUuid ?? null,
      volumeType: row.volumeType,
      primaryStorageInstallPath: row.primaryStorageInstallPath,
      size: num(row.size),
      state: row.state,
      status: row.status,
      latest: Boolean(row.latest),
      format: "qcow2",
      type: "Hypervisor",
    }),
});

extendWithChildren("VmInstance", "allVolumes", {
  type: "Volume",
  foreignKey: "vmInstanceUuid",
  orderBy: "deviceId",
});

/** Lists the ISO in each VM's CD-ROM drive as `vmCdRoms`, as ZStack's VM inventory does. */
extendResource("VmInstance", {
  async enrich(db, rows) {
    if (rows.length === 0) {
      return rows;
    }

    const cdroms = await db
      .selectFrom("vmCdRoms")
      .selectAll()
      .where(
        "vmInstanceUuid",
        "in",
        rows.map((row) => String(row.uuid)),
      )
      .execute();
    const byVm = groupBy(cdroms, (cdrom) => cdrom.vmInstanceUuid);

    for (const row of rows) {
      row.vmCdRoms =
        byVm.get(String(row.uuid))?.map((cdrom) => ({
          vmInstanceUuid: cdrom.vmInstanceUuid,
          deviceId: 0,
          isoUuid: cdrom.isoUuid,
          isoInstallPath: cdrom.installPath,
        })) ?? [];
    }

    return rows;
  },
  inventory: (row) => ({ vmCdRoms: row.vmCdRoms ?? [] }),
});
