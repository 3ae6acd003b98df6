import { Type } from "@sinclair/typebox";
import { CreateCommon, Description, Name, StateEvent, Strict, Uuid } from "../common.js";
import * as Inventory from "../inventories.js";
import type { ApiRoute } from "./declare.js";

/** An IPv4 address or a host name: where the management node reaches a host. */
const ManagementIp = Type.String({
  minLength: 1,
  maxLength: 253,
  pattern: "^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$",
  description: "an IPv4 address or a DNS name",
});

const addHostCommon = {
  name: Name,
  description: Type.Optional(Description),
  managementIp: ManagementIp,
  clusterUuid: Uuid,
  ...CreateCommon,
};

export const computeRoutes = [
  {
    name: "addKVMHost",
    method: "POST",
    path: "/hosts/kvm",
    kind: "create",
    adminOnly: true,
    timeoutMs: 30 * 60 * 1000,
    params: Strict({
      ...addHostCommon,
      username: Type.String({ minLength: 1, maxLength: 64, pattern: "^[a-z_][a-z0-9_-]*$" }),
      password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
      sshKey: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 16384,
          description: "a private key in OpenSSH or PEM format",
        }),
      ),
      sshPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    }),
    inventory: Inventory.HostInventory,
    resource: "Host",
    summary: "Add a KVM host: check it over SSH, install packages, deploy and connect the agent",
  },
  {
    name: "queryHost",
    method: "GET",
    path: "/hosts",
    kind: "query",
    resource: "Host",
    adminOnly: true,
    inventory: Inventory.HostInventory,
    summary: "Query hosts",
  },
  {
    name: "updateHost",
    method: "PUT",
    path: "/hosts/{uuid}/actions",
    kind: "action",
    adminOnly: true,
    params: Strict({ name: Type.Optional(Name), description: Type.Optional(Description) }),
    inventory: Inventory.HostInventory,
    resource: "Host",
    summary: "Rename a host or change its description",
  },
  {
    name: "changeHostState",
    method: "PUT",
    path: "/hosts/{uuid}/actions",
    kind: "action",
    adminOnly: true,
    params: Strict({ stateEvent: StateEvent(["enable", "disable", "maintain"]) }),
    inventory: Inventory.HostInventory,
    resource: "Host",
    summary: "Enable, disable or put a host into maintenance",
  },
  {
    name: "reconnectHost",
    method: "PUT",
    path: "/hosts/{uuid}/actions",
    kind: "action",
    adminOnly: true,
    params: Strict({}),
    inventory: Inventory.HostInventory,
    resource: "Host",
    timeoutMs: 30 * 60 * 1000,
    summary: "Deploy and connect the agent of a host again",
  },
  {
    name: "deleteHost",
    method: "DELETE",
    path: "/hosts/{uuid}",
    kind: "delete",
    adminOnly: true,
    resource: "Host",
    summary: "Remove a host",
  },
  {
    name: "getCpuMemoryCapacity",
    method: "GET",
    path: "/hosts/capacities/cpu-memory",
    kind: "sync",
    adminOnly: true,
    summary: "Sum the CPU and memory capacity of hosts, by zone, cluster or host uuids",
  },
] as const satisfies readonly ApiRoute[];
