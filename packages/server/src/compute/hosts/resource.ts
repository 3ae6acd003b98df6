import { commonFields, commonInventory, defineResource } from "../../resources/registry.js";

defineResource({
  type: "Host",
  table: "hosts",
  key: "uuid",
  visibility: "admin",
  taggable: true,
  fields: {
    ...commonFields,
    zoneUuid: "string",
    clusterUuid: "string",
    managementIp: "string",
    hypervisorType: "string",
    state: "string",
    status: "string",
    architecture: "string",
    accelerator: "string",
  },
  relations: {
    zone: { resource: "Zone", local: "zoneUuid", foreign: "uuid" },
    cluster: { resource: "Cluster", local: "clusterUuid", foreign: "uuid" },
    capacity: { resource: "HostCapacity", local: "uuid", foreign: "uuid" },
  },
  async enrich(db, rows) {
    if (rows.length === 0) {
      return rows;
    }

    const uuids = rows.map((row) => String(row.uuid));
    const capacities = await db
      .selectFrom("hostCapacities")
      .selectAll()
      .where("uuid", "in", uuids)
      .execute();
    const byUuid = new Map(capacities.map((capacity) => [capacity.uuid, capacity]));
    // Object.assign, because spreading into a literal is slow on Node.js 20 (see commonInventory).
    return rows.map((row) => Object.assign({}, byUuid.get(String(row.uuid)), row));
  },
  toInventory: (row) =>
    commonInventory(row, {
      zoneUuid: row.zoneUuid,
      clusterUuid: row.clusterUuid,
      managementIp: row.managementIp,
      hypervisorType: row.hypervisorType,
      state: row.state,
      status: row.status,
      architecture: row.architecture ?? null,
      username: row.username ?? null,
      sshPort: row.sshPort,
      accelerator: row.accelerator ?? null,
      lastError: row.lastError ?? null,
      // Filled from hostCapacities by the query handler.
      totalCpuCapacity: Number(row.totalCpu ?? 0),
      availableCpuCapacity: Number(row.availableCpu ?? 0),
      cpuNum: Number(row.cpuNum ?? 0),
      totalMemoryCapacity: Number(row.totalMemory ?? 0),
      availableMemoryCapacity: Number(row.availableMemory ?? 0),
    }),
});

defineResource({
  type: "HostCapacity",
  table: "hostCapacities",
  key: "uuid",
  visibility: "admin",
  fields: {
    uuid: "string",
    totalCpu: "number",
    availableCpu: "number",
    cpuNum: "number",
    totalMemory: "number",
    availableMemory: "number",
  },
  toInventory: (row) => ({ ...row }),
});
