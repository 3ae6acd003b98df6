import { Type } from "@sinclair/typebox";
import { CreateCommon, Description, Name, StateEvent, Strict, Uuid } from "../common.js";
import * as Inventory from "../inventories.js";
import { type ApiRoute, stateEventEnableDisable, update } from "./declare.js";

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

const backupStorageRoutes: ApiRoute[] = [
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
      importImages: Type.Optional(Type.Boolean()),
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
];

const imageRoutes: ApiRoute[] = [
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
        description: "http, https, or file URL under image.allowedFileUrlPrefixes",
      }),
      mediaType: Type.Optional(
        Type.Union(
          ["RootVolumeTemplate", "DataVolumeTemplate", "ISO"].map((value) => Type.Literal(value)),
        ),
      ),
      format: Type.Optional(
        Type.Union(
          ["qcow2", "raw", "iso"].map((value) => Type.Literal(value)),
          {
            description: "a hint only: the stored format is what qemu-img detects",
          },
        ),
      ),
      platform: Type.Optional(
        Type.Union(["Linux", "Windows", "Other"].map((value) => Type.Literal(value))),
      ),
      guestOsType: Type.Optional(Type.String({ maxLength: 255 })),
      system: Type.Optional(Type.Boolean()),
      backupStorageUuids: Type.Array(Uuid, { minItems: 1, maxItems: 16, uniqueItems: true }),
      ...CreateCommon,
    }),
    inventory: Inventory.ImageInventory,
    resource: "Image",
    summary: "Add an image: each chosen image store downloads it from the URL",
  },
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
    params: Strict({ backupStorageUuids: Type.Optional(Type.Array(Uuid)) }),
    inventory: Inventory.ImageInventory,
    resource: "Image",
    summary: "Bring back a deleted image",
  },
  {
    name: "expungeImage",
    method: "PUT",
    path: "/images/{uuid}/actions",
    kind: "action",
    params: Strict({ backupStorageUuids: Type.Optional(Type.Array(Uuid)) }),
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
];

export const storageRoutes: ApiRoute[] = [...backupStorageRoutes, ...imageRoutes];
