import type { Kysely } from "kysely";
import { groupBy } from "../core/collections.js";
import type { Database } from "../db/schema.js";
import {
  commonFields,
  commonInventory,
  defineResource,
  extendWithChildren,
} from "../resources/registry.js";

type Row = Record<string, unknown>;

/** Groups rows of a child table by a key column. */
function groupByColumn<T extends Row>(rows: T[], key: keyof T) {
  return groupBy(rows, (row) => String(row[key]));
}

function uuidsOf(rows: Row[]) {
  return rows.map((row) => String(row.uuid));
}

export function vniRangeInventory(row: Row) {
  return commonInventory(row, {
    l2NetworkUuid: row.l2NetworkUuid,
    startVni: Number(row.startVni),
    endVni: Number(row.endVni),
  });
}

export function ipRangeInventory(row: Row) {
  return commonInventory(row, {
    l3NetworkUuid: row.l3NetworkUuid,
    startIp: row.startIp,
    endIp: row.endIp,
    netmask: row.netmask,
    gateway: row.gateway,
    networkCidr: row.networkCidr,
    prefixLen: Number(row.prefixLen),
    ipVersion: Number(row.ipVersion),
  });
}

defineResource({
  type: "L2Network",
  table: "l2Networks",
  key: "uuid",
  visibility: "admin",
  taggable: true,
  fields: {
    ...commonFields,
    zoneUuid: "string",
    type: "string",
    physicalInterface: "string",
    vlan: "number",
    vni: "number",
    poolUuid: "string",
  },
  relations: {
    zone: { resource: "Zone", local: "zoneUuid", foreign: "uuid" },
    l3Network: { resource: "L3Network", local: "uuid", foreign: "l2NetworkUuid" },
  },
  async enrich(db: Kysely<Database>, rows) {
    if (rows.length === 0) {
      return rows;
    }

    const uuids = uuidsOf(rows);
    const clusters = groupByColumn(
      await db
        .selectFrom("l2NetworkClusterRefs")
        .selectAll()
        .where("l2NetworkUuid", "in", uuids)
        .execute(),
      "l2NetworkUuid",
    );
    const ranges = groupByColumn(
      await db.selectFrom("vniRanges").selectAll().where("l2NetworkUuid", "in", uuids).execute(),
      "l2NetworkUuid",
    );
    return rows.map((row) => ({
      ...row,
      attachedClusterUuids: (clusters.get(String(row.uuid)) ?? []).map((ref) => ref.clusterUuid),
      attachedVniRanges: (ranges.get(String(row.uuid)) ?? []).map(vniRangeInventory),
    }));
  },
  toInventory: (row) =>
    commonInventory(row, {
      zoneUuid: row.zoneUuid,
      type: row.type,
      vSwitchType: "LinuxBridge",
      physicalInterface: row.physicalInterface ?? null,
      vlan: row.vlan === null || row.vlan === undefined ? null : Number(row.vlan),
      vni: row.vni === null || row.vni === undefined ? null : Number(row.vni),
      poolUuid: row.poolUuid ?? null,
      vtepCidr: row.vtepCidr ?? null,
      attachedClusterUuids: row.attachedClusterUuids ?? [],
      ...(row.type === "VxlanNetworkPool"
        ? { attachedVniRanges: row.attachedVniRanges ?? [] }
        : {}),
    }),
});

defineResource({
  type: "VniRange",
  table: "vniRanges",
  key: "uuid",
  visibility: "admin",
  fields: { ...commonFields, l2NetworkUuid: "string", startVni: "number", endVni: "number" },
  relations: { l2Network: { resource: "L2Network", local: "l2NetworkUuid", foreign: "uuid" } },
  toInventory: vniRangeInventory,
});

defineResource({
  type: "L3Network",
  table: "l3Networks",
  key: "uuid",
  visibility: "public",
  taggable: true,
  fields: {
    ...commonFields,
    zoneUuid: "string",
    l2NetworkUuid: "string",
    type: "string",
    category: "string",
    ipVersion: "number",
    dnsDomain: "string",
    state: "string",
    system: "boolean",
  },
  relations: {
    zone: { resource: "Zone", local: "zoneUuid", foreign: "uuid" },
    l2Network: { resource: "L2Network", local: "l2NetworkUuid", foreign: "uuid" },
    ipRanges: { resource: "IpRange", local: "uuid", foreign: "l3NetworkUuid" },
  },
  async enrich(db: Kysely<Database>, rows) {
    if (rows.length === 0) {
      return rows;
    }

    const uuids = uuidsOf(rows);
    const dns = groupByColumn(
      await db
        .selectFrom("l3Dns")
        .selectAll()
        .where("l3NetworkUuid", "in", uuids)
        .orderBy("position")
        .execute(),
      "l3NetworkUuid",
    );
    const ranges = groupByColumn(
      await db
        .selectFrom("ipRanges")
        .selectAll()
        .where("l3NetworkUuid", "in", uuids)
        .orderBy("startLong")
        .execute(),
      "l3NetworkUuid",
    );
    const services = groupByColumn(
      await db
        .selectFrom("l3NetworkServiceRefs")
        .selectAll()
        .where("l3NetworkUuid", "in", uuids)
        .orderBy("networkServiceType")
        .execute(),
      "l3NetworkUuid",
    );
    return rows.map((row) => {
      const uuid = String(row.uuid);
      return {
        ...row,
        dns: (dns.get(uuid) ?? []).map((entry) => entry.dns),
        ipRanges: (ranges.get(uuid) ?? []).map(ipRangeInventory),
        networkServices: services.get(uuid) ?? [],
      };
    });
  },
  toInventory: (row) =>
    commonInventory(row, {
      type: row.type,
      zoneUuid: row.zoneUuid,
      l2NetworkUuid: row.l2NetworkUuid,
      state: row.state,
      dnsDomain: row.dnsDomain ?? null,
      system: Boolean(Number(row.system)),
      category: row.category,
      ipVersion: Number(row.ipVersion),
      dns: row.dns ?? [],
      ipRanges: row.ipRanges ?? [],
      networkServices: row.networkServices ?? [],
    }),
});

defineResource({
  type: "IpRange",
  table: "ipRanges",
  key: "uuid",
  visibility: "public",
  defaultSort: "startLong",
  fields: {
    ...commonFields,
    l3NetworkUuid: "string",
    startIp: "string",
    endIp: "string",
    netmask: "string",
    gateway: "string",
    networkCidr: "string",
    prefixLen: "number",
    ipVersion: "number",
    startLong: "number",
  },
  relations: { l3Network: { resource: "L3Network", local: "l3NetworkUuid", foreign: "uuid" } },
  toInventory: ipRangeInventory,
});

defineResource({
  type: "NetworkServiceProvider",
  table: "networkServiceProviders",
  key: "uuid",
  visibility: "public",
  fields: {
    uuid: "string",
    name: "string",
    description: "string",
    type: "string",
    createDate: "date",
    lastOpDate: "date",
  },
  async enrich(db: Kysely<Database>, rows) {
    const refs = await db
      .selectFrom("l3NetworkServiceRefs")
      .innerJoin("l3Networks", "l3Networks.uuid", "l3NetworkServiceRefs.l3NetworkUuid")
      .select(["l3NetworkServiceRefs.networkServiceProviderUuid as provider", "l2NetworkUuid"])
      .distinct()
      .execute();
    return rows.map((row) => ({
      ...row,
      attachedL2NetworkUuids: [
        ...new Set(refs.filter((ref) => ref.provider === row.uuid).map((ref) => ref.l2NetworkUuid)),
      ],
    }));
  },
  toInventory: (row) => ({
    uuid: row.uuid,
    name: row.name,
    description: row.description,
    type: row.type,
    networkServiceTypes: JSON.parse(String(row.networkServiceTypes)),
    attachedL2NetworkUuids: row.attachedL2NetworkUuids ?? [],
    createDate: row.createDate,
    lastOpDate: row.lastOpDate,
  }),
});

defineResource({
  type: "VmNic",
  table: "vmNics",
  key: "uuid",
  visibility: "owner",
  fields: {
    uuid: "string",
    vmInstanceUuid: "string",
    l3NetworkUuid: "string",
    ip: "string",
    mac: "string",
    netmask: "string",
    gateway: "string",
    deviceId: "number",
    internalName: "string",
    type: "string",
    createDate: "date",
    lastOpDate: "date",
  },
  relations: { l3Network: { resource: "L3Network", local: "l3NetworkUuid", foreign: "uuid" } },
  toInventory: (row) => ({
    uuid: row.uuid,
    vmInstanceUuid: row.vmInstanceUuid,
    l3NetworkUuid: row.l3NetworkUuid,
    ip: row.ip,
    mac: row.mac,
    netmask: row.netmask,
    gateway: row.gateway,
    ipVersion: 4,
    deviceId: Number(row.deviceId),
    internalName: row.internalName,
    driverType: row.driverType,
    type: row.type,
    hypervisorType: "KVM",
    usedIpUuid: row.usedIpUuid ?? null,
    createDate: row.createDate,
    lastOpDate: row.lastOpDate,
  }),
});

extendWithChildren("VmInstance", "vmNics", {
  type: "VmNic",
  foreignKey: "vmInstanceUuid",
  orderBy: "deviceId",
});
