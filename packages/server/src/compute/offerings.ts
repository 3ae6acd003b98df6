import {
  changeStateHandler,
  insertResource,
  queryHandler,
  simpleDeleteHandler,
  updateHandler,
} from "../resources/crud.js";
import {
  commonFields,
  commonInventory,
  defineResource,
  resourceDefinition,
} from "../resources/registry.js";
import type { ApiHandlers } from "../rest/api.js";

defineResource({
  type: "InstanceOffering",
  table: "instanceOfferings",
  key: "uuid",
  visibility: "public",
  taggable: true,
  fields: {
    ...commonFields,
    cpuNum: "number",
    cpuSpeed: "number",
    memorySize: "number",
    allocatorStrategy: "string",
    sortKey: "number",
    state: "string",
    type: "string",
  },
  toInventory: (row) =>
    commonInventory(row, {
      cpuNum: row.cpuNum,
      cpuSpeed: row.cpuSpeed,
      memorySize: Number(row.memorySize),
      allocatorStrategy: row.allocatorStrategy,
      sortKey: row.sortKey,
      state: row.state,
      type: row.type,
    }),
});

defineResource({
  type: "DiskOffering",
  table: "diskOfferings",
  key: "uuid",
  visibility: "public",
  taggable: true,
  fields: {
    ...commonFields,
    diskSize: "number",
    allocatorStrategy: "string",
    sortKey: "number",
    state: "string",
    type: "string",
  },
  toInventory: (row) =>
    commonInventory(row, {
      diskSize: Number(row.diskSize),
      allocatorStrategy: row.allocatorStrategy,
      sortKey: row.sortKey,
      state: row.state,
      type: row.type,
    }),
});

export const offeringHandlers: ApiHandlers = {
  queryInstanceOffering: queryHandler("InstanceOffering"),
  updateInstanceOffering: updateHandler("InstanceOffering"),
  changeInstanceOfferingState: changeStateHandler("InstanceOffering"),
  deleteInstanceOffering: simpleDeleteHandler("InstanceOffering"),
  createInstanceOffering: {
    run: (core, call) =>
      call.commit(async (tx) => {
        const { name, description, cpuNum, memorySize, cpuSpeed, sortKey, allocatorStrategy } =
          call.params;
        const values = {
          name,
          description: description ?? null,
          cpuNum,
          memorySize,
          cpuSpeed: cpuSpeed ?? 0,
          sortKey: sortKey ?? 0,
          allocatorStrategy: allocatorStrategy ?? "DefaultHostAllocatorStrategy",
          state: "Enabled",
          type: "UserVm",
        };
        const row = await insertResource(tx, core, "InstanceOffering", values, call);
        return { inventory: resourceDefinition("InstanceOffering").toInventory(row) };
      }),
  },
  queryDiskOffering: queryHandler("DiskOffering"),
  updateDiskOffering: updateHandler("DiskOffering"),
  changeDiskOfferingState: changeStateHandler("DiskOffering"),
  deleteDiskOffering: simpleDeleteHandler("DiskOffering"),
  createDiskOffering: {
    run: (core, call) =>
      call.commit(async (tx) => {
        const { name, description, diskSize, sortKey, allocatorStrategy, type } = call.params;
        const values = {
          name,
          description: description ?? null,
          diskSize,
          sortKey: sortKey ?? 0,
          allocatorStrategy: allocatorStrategy ?? "DefaultPrimaryStorageAllocationStrategy",
          state: "Enabled",
          type: type ?? "DefaultDiskOfferingType",
        };
        const row = await insertResource(tx, core, "DiskOffering", values, call);
        return { inventory: resourceDefinition("DiskOffering").toInventory(row) };
      }),
  },
};
