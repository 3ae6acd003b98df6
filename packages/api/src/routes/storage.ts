import { type TObject, Type } from "@sinclair/typebox";
import { CreateCommon, Description, Name, StateEvent, Strict, Uuid } from "../common.js";
import * as Inventory from "../inventories.js";
import { type ApiRoute, type Declared, stateEventEnableDisable, update } from "./declare.js";

/** An absolute directory path on a host. */
const DirectoryPath = Type.String({
  minLength: 2,
  maxLength: 1024,
  pattern: "^/[^\\x00-\\x1f\\x7f]*$",
  description: "absolute directory path on the host",
});

const ManagementIp = Type.String({
  minLength: 1,
  maxLength: 253,
  pattern: "^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$",
  description: "management IP or DNS name of a connected host",
});

const LONG_MS = 3 * 60 * 60 * 1000;

const backupStorageRoutes = [
  {
    name: "addImageStoreBackupStorage",
    method: "POST",
    path: "/backup-storage/image-store",
    kind: "create",
    adminOnly: true,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      url: DirectoryPath,
      hostname: ManagementIp,
      ...CreateCommon,
    }),
    inventory: Inventory.BackupStorageInventory,
    resource: "BackupStorage",
    summary: "Add an image store: a directory on a connected host whose agent serves its images",
  },
  {
    name: "queryBackupStorage",
    method: "GET",
    path: "/backup-storage",
    kind: "query",
    adminOnly: true,
    resource: "BackupStorage",
    inventory: Inventory.BackupStorageInventory,
    summary: "Query backup storage",
  },
  {
    name: "updateBackupStorage",
    method: "PUT",
    path: "/backup-storage/{uuid}/actions",
    kind: "action",
    adminOnly: true,
    params: update,
    inventory: Inventory.BackupStorageInventory,
    resource: "BackupStorage",
    summary: "Rename a backup storage or change its description",
  },
  {
    name: "changeBackupStorageState",
    method: "PUT",
    path: "/backup-storage/{uuid}/actions",
    kind: "action",
    adminOnly: true,
    params: stateEventEnableDisable,
    inventory: Inventory.BackupStorageInventory,
    resource: "BackupStorage",
    summary: "Enable or disable a backup storage",
  },
  {
    name: "reconnectBackupStorage",
    method: "PUT",
    path: "/backup-storage/{uuid}/actions",
    kind: "action",
    adminOnly: true,
    params: Strict({}),
    inventory: Inventory.BackupStorageInventory,
    resource: "BackupStorage",
    summary: "Initialize a backup storage on its host again and refresh its capacity",
  },
  {
    name: "deleteBackupStorage",
    method: "DELETE",
    path: "/backup-storage/{uuid}",
    kind: "delete",
    adminOnly: true,
    resource: "BackupStorage",
    summary: "Remove a backup storage; its files stay on the host",
  },
  {
    name: "attachBackupStorageToZone",
    method: "POST",
    path: "/zones/{zoneUuid}/backup-storage/{backupStorageUuid}",
    kind: "create",
    adminOnly: true,
    params: Strict({}),
    inventory: Inventory.BackupStorageInventory,
    resource: "BackupStorage",
    summary: "Attach a backup storage to a zone",
  },
  {
    name: "detachBackupStorageFromZone",
    method: "DELETE",
    path: "/zones/{zoneUuid}/backup-storage/{backupStorageUuid}",
    kind: "delete",
    adminOnly: true,
    resource: "BackupStorage",
    summary: "Detach a backup storage from a zone",
  },
] as const satisfies readonly ApiRoute[];

/** An API that copies a volume into the chosen image stores as a new image. */
const templateFromVolume = <const N extends string>(name: N, path: string, summary: string) =>
  ({
    name,
    method: "POST",
    path,
    kind: "create",
    timeoutMs: LONG_MS,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      platform: Type.Optional(
        Type.Union(["Linux", "Windows", "Other"].map((value) => Type.Literal(value))),
      ),
      guestOsType: Type.Optional(Type.String({ maxLength: 255 })),
      backupStorageUuids: Type.Array(Uuid, { minItems: 1, maxItems: 16, uniqueItems: true }),
      ...CreateCommon,
    }),
    inventory: Inventory.ImageInventory,
    resource: "Image",
    summary,
  }) satisfies ApiRoute;

const imageRoutes = [
  {
    name: "getImageUploadUrl",
    method: "GET",
    path: "/images/{uuid}/upload-url",
    kind: "sync",
    summary: "Get a short-lived URL to PUT the bytes of an upload:// image to, while it is added",
  },
  {
    name: "addImage",
    method: "POST",
    path: "/images",
    kind: "create",
    timeoutMs: LONG_MS,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      url: Type.String({
        minLength: 1,
        maxLength: 2048,
        description:
          "http, https, or file URL under image.allowedFileUrlPrefixes; upload://<name> to PUT the bytes to the URL of getImageUploadUrl",
      }),
      mediaType: Type.Optional(
        Type.Union(
          ["RootVolumeTemplate", "DataVolumeTemplate", "ISO"].map((value) => Type.Literal(value)),
        ),
      ),
      format: Type.Optional(
        Type.Union(
          ["qcow2", "raw", "iso", "tar"].map((value) => Type.Literal(value)),
          {
            description:
              "a hint only: the stored format is what the agent detects; tar (plain, gzip or xz) is a container root filesystem",
          },
        ),
      ),
      platform: Type.Optional(
        Type.Union(["Linux", "Windows", "Other"].map((value) => Type.Literal(value))),
      ),
      guestOsType: Type.Optional(Type.String({ maxLength: 255 })),
      backupStorageUuids: Type.Array(Uuid, { minItems: 1, maxItems: 16, uniqueItems: true }),
      ...CreateCommon,
    }),
    inventory: Inventory.ImageInventory,
    resource: "Image",
    summary: "Add an image: each chosen image store downloads it from the URL",
  },
  templateFromVolume(
    "createRootVolumeTemplateFromRootVolume",
    "/images/root-volume-templates/from/volumes/{rootVolumeUuid}",
    "Create an image from a root volume whose VM is stopped",
  ),
  templateFromVolume(
    "createDataVolumeTemplateFromVolume",
    "/images/data-volume-templates/from/volumes/{volumeUuid}",
    "Create an image from a data volume that no running VM uses",
  ),
  templateFromVolume(
    "createRootVolumeTemplateFromVolumeSnapshot",
    "/images/root-volume-templates/from/volume-snapshots/{snapshotUuid}",
    "Create an image from a snapshot of a root volume, while its VM runs or not",
  ),
  templateFromVolume(
    "createDataVolumeTemplateFromVolumeSnapshot",
    "/images/data-volume-templates/from/volume-snapshots/{snapshotUuid}",
    "Create an image from a snapshot of a data volume, while its VM runs or not",
  ),
  {
    name: "queryImage",
    method: "GET",
    path: "/images",
    kind: "query",
    resource: "Image",
    inventory: Inventory.ImageInventory,
    summary: "Query images",
  },
  {
    name: "updateImage",
    method: "PUT",
    path: "/images/{uuid}/actions",
    kind: "action",
    params: Strict({
      name: Type.Optional(Name),
      description: Type.Optional(Description),
      platform: Type.Optional(
        Type.Union(["Linux", "Windows", "Other"].map((value) => Type.Literal(value))),
      ),
      guestOsType: Type.Optional(Type.String({ maxLength: 255 })),
    }),
    inventory: Inventory.ImageInventory,
    resource: "Image",
    summary: "Change an image's name, description, platform or guest OS type",
  },
  {
    name: "changeImageState",
    method: "PUT",
    path: "/images/{uuid}/actions",
    kind: "action",
    params: stateEventEnableDisable,
    inventory: Inventory.ImageInventory,
    resource: "Image",
    summary: "Enable or disable an image",
  },
  {
    name: "recoverImage",
    method: "PUT",
    path: "/images/{uuid}/actions",
    kind: "action",
    params: Strict({
      backupStorageUuids: Type.Optional(
        Type.Array(Uuid, { description: "accepted for ZStack clients; every store is affected" }),
      ),
    }),
    inventory: Inventory.ImageInventory,
    resource: "Image",
    summary: "Bring back a deleted image",
  },
  {
    name: "expungeImage",
    method: "PUT",
    path: "/images/{uuid}/actions",
    kind: "action",
    params: Strict({
      backupStorageUuids: Type.Optional(
        Type.Array(Uuid, { description: "accepted for ZStack clients; every store is affected" }),
      ),
    }),
    resource: "Image",
    summary: "Remove a deleted image's files from its image stores, for good",
  },
  {
    name: "deleteImage",
    method: "DELETE",
    path: "/images/{uuid}",
    kind: "delete",
    resource: "Image",
    summary: "Delete an image; recoverImage brings it back until it is expunged",
  },
] as const satisfies readonly ApiRoute[];

const addPrimaryStorageParams = Strict({
  name: Name,
  description: Type.Optional(Description),
  url: DirectoryPath,
  zoneUuid: Uuid,
  ...CreateCommon,
});

const primaryStorageAction = <const N extends string>(
  name: N,
  summary: string,
): Declared<N, "action", TObject<{}>, typeof Inventory.PrimaryStorageInventory> => ({
  name,
  method: "PUT",
  path: "/primary-storage/{uuid}/actions",
  kind: "action",
  adminOnly: true,
  params: Strict({}),
  inventory: Inventory.PrimaryStorageInventory,
  resource: "PrimaryStorage",
  summary,
});

const primaryStorageRoutes = [
  {
    name: "addLocalPrimaryStorage",
    method: "POST",
    path: "/primary-storage/local-storage",
    kind: "create",
    adminOnly: true,
    params: addPrimaryStorageParams,
    inventory: Inventory.PrimaryStorageInventory,
    resource: "PrimaryStorage",
    summary: "Add local storage: the same directory on every host of the attached clusters",
  },
  {
    name: "addSharedMountPointPrimaryStorage",
    method: "POST",
    path: "/primary-storage/smp",
    kind: "create",
    adminOnly: true,
    params: addPrimaryStorageParams,
    inventory: Inventory.PrimaryStorageInventory,
    resource: "PrimaryStorage",
    summary: "Add a shared mount point: one shared filesystem mounted at the path on every host",
  },
  {
    name: "queryPrimaryStorage",
    method: "GET",
    path: "/primary-storage",
    kind: "query",
    adminOnly: true,
    resource: "PrimaryStorage",
    inventory: Inventory.PrimaryStorageInventory,
    summary: "Query primary storage",
  },
  {
    name: "updatePrimaryStorage",
    method: "PUT",
    path: "/primary-storage/{uuid}/actions",
    kind: "action",
    adminOnly: true,
    params: update,
    inventory: Inventory.PrimaryStorageInventory,
    resource: "PrimaryStorage",
    summary: "Rename a primary storage or change its description",
  },
  {
    name: "changePrimaryStorageState",
    method: "PUT",
    path: "/primary-storage/{uuid}/actions",
    kind: "action",
    adminOnly: true,
    params: Strict({ stateEvent: StateEvent(["enable", "disable", "maintain"]) }),
    inventory: Inventory.PrimaryStorageInventory,
    resource: "PrimaryStorage",
    summary: "Enable, disable or put a primary storage into maintenance",
  },
  primaryStorageAction(
    "reconnectPrimaryStorage",
    "Prepare a primary storage on its hosts again and refresh its capacity",
  ),
  primaryStorageAction(
    "syncPrimaryStorageCapacity",
    "Measure a primary storage's physical capacity again and recompute what is available",
  ),
  primaryStorageAction(
    "cleanUpImageCacheOnPrimaryStorage",
    "Delete the image cache entries of a primary storage that no volume or CD-ROM uses",
  ),
  {
    name: "deletePrimaryStorage",
    method: "DELETE",
    path: "/primary-storage/{uuid}",
    kind: "delete",
    adminOnly: true,
    resource: "PrimaryStorage",
    summary: "Remove a primary storage that no cluster uses; its files stay on the hosts",
  },
  {
    name: "attachPrimaryStorageToCluster",
    method: "POST",
    path: "/clusters/{clusterUuid}/primary-storage/{primaryStorageUuid}",
    kind: "create",
    adminOnly: true,
    params: Strict({}),
    inventory: Inventory.PrimaryStorageInventory,
    resource: "PrimaryStorage",
    summary: "Attach a primary storage to a cluster and prepare it on the cluster's hosts",
  },
  {
    name: "detachPrimaryStorageFromCluster",
    method: "DELETE",
    path: "/clusters/{clusterUuid}/primary-storage/{primaryStorageUuid}",
    kind: "delete",
    adminOnly: true,
    resource: "PrimaryStorage",
    summary: "Detach a primary storage from a cluster that has no volumes on it",
  },
  {
    name: "getPrimaryStorageCapacity",
    method: "GET",
    path: "/primary-storage/capacities",
    kind: "sync",
    adminOnly: true,
    summary: "Sum primary storage capacity by zone, cluster or primary storage uuids",
  },
  {
    name: "getLocalStorageHostDiskCapacity",
    method: "GET",
    path: "/primary-storage/local-storage/{primaryStorageUuid}/capacities",
    kind: "sync",
    adminOnly: true,
    summary: "Capacity of each host's share of a local storage",
  },
  {
    name: "queryImageCache",
    method: "GET",
    path: "/primary-storage/imagecache",
    kind: "query",
    adminOnly: true,
    resource: "ImageCache",
    inventory: Inventory.ImageCacheInventory,
    summary: "Query the image copies cached on primary storage",
  },
] as const satisfies readonly ApiRoute[];

const volumeRoutes = [
  {
    name: "queryVolume",
    method: "GET",
    path: "/volumes",
    kind: "query",
    resource: "Volume",
    inventory: Inventory.VolumeInventory,
    summary: "Query volumes",
  },
] as const satisfies readonly ApiRoute[];

export const storageRoutes = [
  ...volumeRoutes,
  ...backupStorageRoutes,
  ...imageRoutes,
  ...primaryStorageRoutes,
] as const satisfies readonly ApiRoute[];
