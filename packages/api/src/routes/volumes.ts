import { type TSchema, Type } from "@sinclair/typebox";
import { CreateCommon, Description, Name, Strict, Uuid } from "../common.js";
import * as Inventory from "../inventories.js";
import { type ApiRoute, type Declared, stateEventEnableDisable, update } from "./declare.js";

/** ZStack's timeout of snapshot APIs: a delete merges the snapshot into its children. */
const SNAPSHOT_MS = 3 * 60 * 60 * 1000;

const VolumeSize = Type.Integer({
  minimum: 1024 * 1024,
  maximum: 1024 ** 5,
  description: "new virtual size in bytes, larger than the current one",
});

const volumeAction = <const N extends string, P extends TSchema>(
  name: N,
  params: P,
  summary: string,
): Declared<N, "action", P, typeof Inventory.VolumeInventory> => ({
  name,
  method: "PUT",
  path: "/volumes/{uuid}/actions",
  kind: "action",
  params,
  inventory: Inventory.VolumeInventory,
  resource: "Volume",
  summary,
});

const dataVolumeRoutes = [
  {
    name: "createDataVolume",
    method: "POST",
    path: "/volumes/data",
    kind: "create",
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      diskOfferingUuid: Type.Optional(Uuid),
      diskSize: Type.Optional(
        Type.Integer({
          minimum: 1024 * 1024,
          maximum: 1024 ** 5,
          description: "virtual size in bytes, when no disk offering is given",
        }),
      ),
      // With a primary storage the file is made at once; without, the volume is NotInstantiated.
      primaryStorageUuid: Type.Optional(Uuid),
      ...CreateCommon,
    }),
    inventory: Inventory.VolumeInventory,
    resource: "Volume",
    summary: "Create a data volume from a disk offering or a size",
  },
  volumeAction("updateVolume", update, "Rename a volume or change its description"),
  volumeAction("changeVolumeState", stateEventEnableDisable, "Enable or disable a volume"),
  volumeAction(
    "recoverDataVolume",
    Strict({}),
    "Bring back a deleted data volume; its file was kept until expunge",
  ),
  {
    name: "expungeDataVolume",
    method: "PUT",
    path: "/volumes/{uuid}/actions",
    kind: "action",
    params: Strict({}),
    resource: "Volume",
    summary: "Remove a deleted data volume's file and snapshots for good and return its capacity",
  },
  {
    name: "deleteDataVolume",
    method: "DELETE",
    path: "/volumes/{uuid}",
    kind: "delete",
    resource: "Volume",
    summary: "Delete a data volume; recoverDataVolume brings it back until it is expunged",
  },
] as const satisfies readonly ApiRoute[];

const attachRoutes = [
  {
    name: "attachDataVolumeToVm",
    method: "POST",
    path: "/volumes/{volumeUuid}/vm-instances/{vmInstanceUuid}",
    kind: "create",
    params: Strict({}),
    inventory: Inventory.VolumeInventory,
    resource: "Volume",
    summary:
      "Attach a data volume to a Running VM (hotplug) or a Stopped one (used from its next start)",
  },
  {
    name: "detachDataVolumeFromVm",
    method: "DELETE",
    path: "/volumes/{uuid}/vm-instances",
    kind: "delete",
    inventory: Inventory.VolumeInventory,
    resource: "Volume",
    summary: "Detach a data volume from its VM, given as vmUuid in the query string (optional)",
  },
  {
    name: "getDataVolumeAttachableVm",
    method: "GET",
    path: "/volumes/{volumeUuid}/candidate-vm-instances",
    kind: "sync",
    summary: "List the VMs a data volume can be attached to now",
  },
  {
    name: "getVmAttachableDataVolume",
    method: "GET",
    path: "/vm-instances/{vmInstanceUuid}/data-volume-candidates",
    kind: "sync",
    summary: "List the data volumes that can be attached to a VM now",
  },
  {
    name: "resizeRootVolume",
    method: "PUT",
    path: "/volumes/resize/{uuid}/actions",
    kind: "action",
    params: Strict({ size: VolumeSize }),
    inventory: Inventory.VolumeInventory,
    resource: "Volume",
    summary: "Grow a root volume: qemu-img while its VM is Stopped, block_resize while Running",
  },
  {
    name: "resizeDataVolume",
    method: "PUT",
    path: "/volumes/data/resize/{uuid}/actions",
    kind: "action",
    params: Strict({ size: VolumeSize }),
    inventory: Inventory.VolumeInventory,
    resource: "Volume",
    summary: "Grow a data volume: qemu-img while its VM is Stopped, block_resize while Running",
  },
] as const satisfies readonly ApiRoute[];

const isoRoutes = [
  {
    name: "attachIsoToVmInstance",
    method: "POST",
    path: "/vm-instances/{vmInstanceUuid}/iso/{isoUuid}",
    kind: "create",
    params: Strict({}),
    inventory: Inventory.VmInstanceInventory,
    resource: "VmInstance",
    summary: "Insert an ISO image into a VM's CD-ROM drive; a Stopped VM gets it at its next start",
  },
  {
    name: "detachIsoFromVmInstance",
    method: "DELETE",
    path: "/vm-instances/{vmInstanceUuid}/iso",
    kind: "delete",
    inventory: Inventory.VmInstanceInventory,
    resource: "VmInstance",
    summary: "Eject the ISO image from a VM's CD-ROM drive (isoUuid in the query string, optional)",
  },
  {
    name: "getCandidateVmForAttachingIso",
    method: "GET",
    path: "/images/iso/{isoUuid}/vm-candidates",
    kind: "sync",
    summary: "List the Running or Stopped VMs with an empty CD-ROM drive that can take an ISO",
  },
] as const satisfies readonly ApiRoute[];

const snapshotRoutes = [
  {
    name: "createVolumeSnapshot",
    method: "POST",
    path: "/volumes/{volumeUuid}/volume-snapshots",
    kind: "create",
    timeoutMs: SNAPSHOT_MS,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      ...CreateCommon,
    }),
    inventory: Inventory.VolumeSnapshotInventory,
    resource: "VolumeSnapshot",
    summary: "Take a snapshot of a volume: online through QMP while its VM runs, else offline",
  },
  {
    name: "queryVolumeSnapshot",
    method: "GET",
    path: "/volume-snapshots",
    kind: "query",
    resource: "VolumeSnapshot",
    inventory: Inventory.VolumeSnapshotInventory,
    summary: "Query volume snapshots",
  },
  {
    name: "updateVolumeSnapshot",
    method: "PUT",
    path: "/volume-snapshots/{uuid}/actions",
    kind: "action",
    params: update,
    inventory: Inventory.VolumeSnapshotInventory,
    resource: "VolumeSnapshot",
    summary: "Rename a volume snapshot or change its description",
  },
  {
    name: "revertVolumeFromSnapshot",
    method: "PUT",
    path: "/volume-snapshots/{uuid}/actions",
    kind: "action",
    timeoutMs: SNAPSHOT_MS,
    params: Strict({}),
    inventory: Inventory.VolumeInventory,
    resource: "VolumeSnapshot",
    summary: "Discard a volume's writes since a snapshot; its VM must be Stopped",
  },
  {
    name: "deleteVolumeSnapshot",
    method: "DELETE",
    path: "/volume-snapshots/{uuid}",
    kind: "delete",
    timeoutMs: SNAPSHOT_MS,
    resource: "VolumeSnapshot",
    summary:
      "Delete a snapshot by merging it into the files based on it; a snapshot the running VM reads through needs the VM Stopped",
  },
] as const satisfies readonly ApiRoute[];

export const volumeRoutes = [
  ...dataVolumeRoutes,
  ...attachRoutes,
  ...isoRoutes,
  ...snapshotRoutes,
] as const satisfies readonly ApiRoute[];
