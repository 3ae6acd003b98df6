import { Type } from "@sinclair/typebox";
import { CreateCommon, DateTime, Description, Name, Strict, Uuid } from "../common.js";
import * as Inventory from "../inventories.js";
import type { ApiRoute } from "./declare.js";

const SimulatedPath = Type.String({
  minLength: 2,
  maxLength: 1024,
  pattern: "^/[^\\x00-\\x1f\\x7f]*$",
  description: "absolute path; the simulator keeps its files in memory",
});

const Bytes = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: "bytes" });

const FaultKind = Type.Union(
  ["fail", "delay", "timeout", "drop-callback", "host-down"].map((kind) => Type.Literal(kind)),
);

/** An injected simulator fault with its remaining uses. */
export const SimulatorFaultInventory = Type.Object({
  uuid: Uuid,
  path: Type.String(),
  resourceUuid: Type.Optional(Uuid),
  kind: FaultKind,
  errorText: Type.Optional(Type.String()),
  delayMs: Type.Optional(Type.Integer()),
  count: Type.Optional(Type.Integer()),
  usesLeft: Type.Union([Type.Integer(), Type.Null()]),
  createDate: DateTime,
});

/** Simulator hosts and storage as ZStack has them, and fault injection, which ZStack lacks. */
export const simulatorRoutes = [
  {
    name: "addSimulatorHost",
    method: "POST",
    path: "/hosts/simulators",
    kind: "create",
    adminOnly: true,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      managementIp: Type.String({ minLength: 1, maxLength: 253 }),
      clusterUuid: Uuid,
      cpuCapacity: Type.Integer({ minimum: 1, maximum: 100_000 }),
      memoryCapacity: Type.Integer({ minimum: 1, description: "bytes" }),
      ...CreateCommon,
    }),
    inventory: Inventory.HostInventory,
    resource: "Host",
    summary: "Add a simulator host: a host the simulator answers the agent protocol for",
  },
  {
    name: "addSimulatorPrimaryStorage",
    method: "POST",
    path: "/primary-storage/simulators",
    kind: "create",
    adminOnly: true,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      url: SimulatedPath,
      zoneUuid: Uuid,
      totalCapacity: Bytes,
      availableCapacity: Bytes,
      ...CreateCommon,
    }),
    inventory: Inventory.PrimaryStorageInventory,
    resource: "PrimaryStorage",
    summary: "Add simulator primary storage, shared by the simulator hosts of attached clusters",
  },
  {
    name: "addSimulatorBackupStorage",
    method: "POST",
    path: "/backup-storage/simulators",
    kind: "create",
    adminOnly: true,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      url: SimulatedPath,
      totalCapacity: Bytes,
      availableCapacity: Bytes,
      ...CreateCommon,
    }),
    inventory: Inventory.BackupStorageInventory,
    resource: "BackupStorage",
    summary: "Add simulator backup storage, whose images the simulator pretends to download",
  },
  {
    name: "createSimulatorFault",
    method: "POST",
    path: "/simulator/faults",
    kind: "create",
    adminOnly: true,
    params: Strict({
      path: Type.String({
        minLength: 1,
        maxLength: 201,
        description: "agent command path such as /vm/start, or * for every path",
      }),
      resourceUuid: Type.Optional(Uuid),
      kind: FaultKind,
      errorText: Type.Optional(Type.String({ minLength: 1, maxLength: 2000 })),
      delayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
      count: Type.Optional(Type.Integer({ minimum: 1 })),
    }),
    inventory: SimulatorFaultInventory,
    summary:
      "Inject a fault into the simulator for one agent command path or all, on one resource or all",
  },
  {
    name: "querySimulatorFault",
    method: "GET",
    path: "/simulator/faults",
    kind: "sync",
    adminOnly: true,
    summary: "List the injected simulator faults with their remaining uses",
  },
  {
    name: "deleteSimulatorFault",
    method: "DELETE",
    path: "/simulator/faults/{uuid}",
    kind: "delete",
    adminOnly: true,
    summary: "Delete one injected simulator fault",
  },
  {
    name: "deleteAllSimulatorFaults",
    method: "DELETE",
    path: "/simulator/faults",
    kind: "delete",
    adminOnly: true,
    summary: "Delete every injected simulator fault",
  },
] as const satisfies readonly ApiRoute[];
