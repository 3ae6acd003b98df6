import { type TObject, type TSchema, Type } from "@sinclair/typebox";
import { CreateCommon, Description, Name, StateEvent, Strict, Uuid } from "../common.js";
import * as Inventory from "../inventories.js";
import type { ApiRoute, Declared } from "./declare.js";

const path = "/vm-instances/{uuid}/actions";
const inventory = Inventory.VmInstanceInventory;

function action<const N extends string, P extends TSchema = TObject<{}>>(
  name: N,
  summary: string,
  params: P = Strict({}) as unknown as P,
  timeoutMs?: number,
): Declared<N, "action", P, typeof inventory> {
  return {
    name,
    method: "PUT",
    path,
    kind: "action",
    params,
    inventory,
    resource: "VmInstance",
    summary,
    ...(timeoutMs ? { timeoutMs } : {}),
  };
}

export const vmRoutes = [
  {
    name: "createVmInstance",
    method: "POST",
    path: "/vm-instances",
    kind: "create",
    timeoutMs: 12 * 60 * 60 * 1000,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      instanceOfferingUuid: Type.Optional(Uuid),
      cpuNum: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
      memorySize: Type.Optional(
        Type.Integer({
          minimum: 96 * 1024 * 1024,
          maximum: 1024 ** 4,
          description: "bytes; at least 96 MiB",
        }),
      ),
      imageUuid: Uuid,
      l3NetworkUuids: Type.Optional(Type.Array(Uuid, { maxItems: 8, uniqueItems: true })),
      defaultL3NetworkUuid: Type.Optional(Uuid),
      rootDiskSize: Type.Optional(
        Type.Integer({ minimum: 1024 * 1024, maximum: 64 * 1024 ** 4, description: "bytes" }),
      ),
      zoneUuid: Type.Optional(Uuid),
      clusterUuid: Type.Optional(Uuid),
      hostUuid: Type.Optional(Uuid),
      strategy: Type.Optional(StateEvent(["InstantStart", "JustCreate", "CreateStopped"])),
      ...CreateCommon,
    }),
    inventory,
    resource: "VmInstance",
    summary: "Create a VM from an image and start it",
  },
  {
    name: "queryVmInstance",
    method: "GET",
    path: "/vm-instances",
    kind: "query",
    resource: "VmInstance",
    inventory,
    summary: "Query VMs",
  },
  action(
    "updateVmInstance",
    "Rename a VM or change its description",
    Strict({ name: Type.Optional(Name), description: Type.Optional(Description) }),
  ),
  action(
    "startVmInstance",
    "Start a stopped VM",
    Strict({ hostUuid: Type.Optional(Uuid), clusterUuid: Type.Optional(Uuid) }),
    60 * 60 * 1000,
  ),
  action(
    "stopVmInstance",
    "Stop a VM: ACPI power-off with a timeout (grace), or at once (cold)",
    Strict({ type: Type.Optional(StateEvent(["grace", "cold"])) }),
  ),
  action("rebootVmInstance", "Reboot a running VM"),
  action("pauseVmInstance", "Pause a running VM"),
  action("resumeVmInstance", "Resume a paused VM"),
  action("recoverVmInstance", "Recover a destroyed VM as Stopped"),
  action("expungeVmInstance", "Delete a destroyed VM and its volumes for good"),
  action(
    "changeInstanceOffering",
    "Change the CPU and memory of a stopped VM",
    Strict({ instanceOfferingUuid: Uuid }),
  ),
  {
    name: "destroyVmInstance",
    method: "DELETE",
    path: "/vm-instances/{uuid}",
    kind: "delete",
    resource: "VmInstance",
    summary: "Destroy a VM; it stays recoverable until expunged",
  },
  {
    name: "getVmConsoleLog",
    method: "GET",
    path: "/vm-instances/{uuid}/console-log",
    kind: "sync",
    summary:
      "Return the tail of a running VM's serial console log (tstack extension); query parameter bytes, default 65536",
  },
] as const satisfies readonly ApiRoute[];
