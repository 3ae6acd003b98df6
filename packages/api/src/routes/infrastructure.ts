import { Type } from "@sinclair/typebox";
import { CreateCommon, Description, Name, StateEvent, Strict, Uuid } from "../common.js";
import * as Inventory from "../inventories.js";
import { type ApiRoute, crud } from "./declare.js";

export const infrastructureRoutes = [
  ...crud({
    resource: "Zone",
    api: "Zone",
    path: "/zones",
    inventory: Inventory.ZoneInventory,
    adminOnly: true,
    changeState: true,
    create: Strict({ name: Name, description: Type.Optional(Description), ...CreateCommon }),
  }),
  ...crud({
    resource: "Cluster",
    api: "Cluster",
    path: "/clusters",
    inventory: Inventory.ClusterInventory,
    adminOnly: true,
    changeState: true,
    create: Strict({
      zoneUuid: Uuid,
      name: Name,
      description: Type.Optional(Description),
      hypervisorType: StateEvent([...Inventory.HypervisorTypes]),
      type: Type.Optional(Type.Literal("zstack")),
      ...CreateCommon,
    }),
  }),
  ...crud({
    resource: "InstanceOffering",
    api: "InstanceOffering",
    path: "/instance-offerings",
    inventory: Inventory.InstanceOfferingInventory,
    adminOnly: true,
    changeState: true,
    create: Strict({
      name: Name,
      description: Type.Optional(Description),
      cpuNum: Type.Integer({ minimum: 1, maximum: 1024 }),
      memorySize: Type.Integer({
        minimum: 16 * 1024 * 1024,
        maximum: 16 * 1024 ** 4,
        description: "bytes",
      }),
      cpuSpeed: Type.Optional(Type.Integer({ minimum: 0 })),
      sortKey: Type.Optional(Type.Integer()),
      allocatorStrategy: Type.Optional(Type.String({ maxLength: 255 })),
      type: Type.Optional(Type.Literal("UserVm")),
      ...CreateCommon,
    }),
  }),
  ...crud({
    resource: "DiskOffering",
    api: "DiskOffering",
    path: "/disk-offerings",
    inventory: Inventory.DiskOfferingInventory,
    adminOnly: true,
    changeState: true,
    create: Strict({
      name: Name,
      description: Type.Optional(Description),
      diskSize: Type.Integer({ minimum: 1024 * 1024, maximum: 1024 ** 5, description: "bytes" }),
      sortKey: Type.Optional(Type.Integer()),
      allocatorStrategy: Type.Optional(Type.String({ maxLength: 255 })),
      type: Type.Optional(Type.String({ maxLength: 255 })),
      ...CreateCommon,
    }),
  }),
] as const satisfies readonly ApiRoute[];
