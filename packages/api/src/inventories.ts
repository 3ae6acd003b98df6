import { type Static, Type } from "@sinclair/typebox";
import { DateTime, InventoryCommon, Uuid } from "./common.js";

export const ZoneInventory = Type.Object({
  ...InventoryCommon,
  state: Type.Union([Type.Literal("Enabled"), Type.Literal("Disabled")]),
  type: Type.String(),
});
export type ZoneInventory = Static<typeof ZoneInventory>;

export const HypervisorTypes = ["KVM", "Container", "Simulator"] as const;

export const ClusterInventory = Type.Object({
  ...InventoryCommon,
  zoneUuid: Uuid,
  state: Type.Union([Type.Literal("Enabled"), Type.Literal("Disabled")]),
  hypervisorType: Type.Union(HypervisorTypes.map((type) => Type.Literal(type))),
  type: Type.String(),
});
export type ClusterInventory = Static<typeof ClusterInventory>;

export const InstanceOfferingInventory = Type.Object({
  ...InventoryCommon,
  cpuNum: Type.Integer(),
  cpuSpeed: Type.Integer(),
  memorySize: Type.Integer({ description: "bytes" }),
  allocatorStrategy: Type.String(),
  sortKey: Type.Integer(),
  state: Type.String(),
  type: Type.String(),
});
export type InstanceOfferingInventory = Static<typeof InstanceOfferingInventory>;

export const DiskOfferingInventory = Type.Object({
  ...InventoryCommon,
  diskSize: Type.Integer({ description: "bytes" }),
  sortKey: Type.Integer(),
  state: Type.String(),
  type: Type.String(),
  allocatorStrategy: Type.String(),
});
export type DiskOfferingInventory = Static<typeof DiskOfferingInventory>;

export const GlobalConfigInventory = Type.Object({
  category: Type.String(),
  name: Type.String(),
  description: Type.String(),
  defaultValue: Type.String(),
  value: Type.String(),
  type: Type.String(),
});
export type GlobalConfigInventory = Static<typeof GlobalConfigInventory>;

export const TagInventory = Type.Object({
  uuid: Uuid,
  resourceUuid: Uuid,
  resourceType: Type.String(),
  tag: Type.String(),
  type: Type.Union([Type.Literal("System"), Type.Literal("User")]),
  inherent: Type.Boolean(),
  createDate: DateTime,
  lastOpDate: DateTime,
});
export type TagInventory = Static<typeof TagInventory>;

export const AccountInventory = Type.Object({
  ...InventoryCommon,
  type: Type.Union([Type.Literal("SystemAdmin"), Type.Literal("Normal")]),
  state: Type.String(),
});
export type AccountInventory = Static<typeof AccountInventory>;

export const UserInventory = Type.Object({
  ...InventoryCommon,
  accountUuid: Uuid,
  state: Type.String(),
});
export type UserInventory = Static<typeof UserInventory>;

export const SessionInventory = Type.Object({
  uuid: Uuid,
  accountUuid: Uuid,
  userUuid: Uuid,
  userType: Type.String(),
  expiredDate: DateTime,
  createDate: DateTime,
  noSessionEvaluation: Type.Boolean(),
});
export type SessionInventory = Static<typeof SessionInventory>;

export const QuotaInventory = Type.Object({
  uuid: Uuid,
  name: Type.String(),
  identityUuid: Uuid,
  identityType: Type.String(),
  value: Type.Integer(),
  createDate: DateTime,
  lastOpDate: DateTime,
});
export type QuotaInventory = Static<typeof QuotaInventory>;

export const ManagementNodeInventory = Type.Object({
  uuid: Uuid,
  hostName: Type.String(),
  port: Type.Integer(),
  state: Type.String(),
  version: Type.String(),
  heartBeat: DateTime,
  joinDate: DateTime,
});
export type ManagementNodeInventory = Static<typeof ManagementNodeInventory>;

export const AuditInventory = Type.Object({
  uuid: Uuid,
  accountUuid: Type.Union([Uuid, Type.Null()]),
  userUuid: Type.Union([Uuid, Type.Null()]),
  apiName: Type.String(),
  resourceUuid: Type.Union([Type.String(), Type.Null()]),
  requestId: Type.String(),
  jobUuid: Type.Union([Uuid, Type.Null()]),
  success: Type.Union([Type.Boolean(), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
  clientIp: Type.String(),
  createDate: DateTime,
  finishDate: Type.Union([DateTime, Type.Null()]),
});
export type AuditInventory = Static<typeof AuditInventory>;

export const WebHookInventory = Type.Object({
  ...InventoryCommon,
  url: Type.String(),
  type: Type.String(),
  opaque: Type.Union([Type.String(), Type.Null()]),
});
export type WebHookInventory = Static<typeof WebHookInventory>;

export const ApiJobInventory = Type.Object({
  uuid: Uuid,
  apiName: Type.String(),
  state: Type.String(),
  progress: Type.Union([Type.Integer(), Type.Null()]),
  progressText: Type.Union([Type.String(), Type.Null()]),
  accountUuid: Type.Union([Uuid, Type.Null()]),
  resourceUuid: Type.Union([Type.String(), Type.Null()]),
  managementNodeUuid: Type.String(),
  deadline: DateTime,
  createDate: DateTime,
  lastOpDate: DateTime,
});
export type ApiJobInventory = Static<typeof ApiJobInventory>;

export const HostInventory = Type.Object({
  ...InventoryCommon,
  zoneUuid: Uuid,
  clusterUuid: Uuid,
  managementIp: Type.String(),
  hypervisorType: Type.String(),
  state: Type.String(),
  status: Type.String(),
  architecture: Type.Union([Type.String(), Type.Null()]),
  username: Type.Union([Type.String(), Type.Null()]),
  sshPort: Type.Integer(),
  totalCpuCapacity: Type.Integer(),
  availableCpuCapacity: Type.Integer(),
  cpuNum: Type.Integer(),
  totalMemoryCapacity: Type.Integer(),
  availableMemoryCapacity: Type.Integer(),
  accelerator: Type.Union([Type.String(), Type.Null()]),
  lastError: Type.Union([Type.String(), Type.Null()]),
  /** Error of the host's last failed security-group push, null once a push succeeds. */
  securityGroupPushError: Type.Union([Type.String(), Type.Null()]),
  /** Failed security-group pushes since the last successful one; a retry runs in the background. */
  securityGroupPushAttempts: Type.Integer(),
});
export type HostInventory = Static<typeof HostInventory>;

export const L2NetworkTypes = [
  "L2NoVlanNetwork",
  "L2VlanNetwork",
  "VxlanNetworkPool",
  "VxlanNetwork",
] as const;

export const VniRangeInventory = Type.Object({
  ...InventoryCommon,
  l2NetworkUuid: Uuid,
  startVni: Type.Integer(),
  endVni: Type.Integer(),
});
export type VniRangeInventory = Static<typeof VniRangeInventory>;

export const L2NetworkInventory = Type.Object({
  ...InventoryCommon,
  zoneUuid: Uuid,
  type: Type.Union(L2NetworkTypes.map((type) => Type.Literal(type))),
  vSwitchType: Type.String(),
  physicalInterface: Type.Union([Type.String(), Type.Null()]),
  vlan: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
  vni: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
  poolUuid: Type.Optional(Type.Union([Uuid, Type.Null()])),
  vtepCidr: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  attachedClusterUuids: Type.Array(Uuid),
  attachedVniRanges: Type.Optional(Type.Array(VniRangeInventory)),
});
export type L2NetworkInventory = Static<typeof L2NetworkInventory>;

export const IpRangeInventory = Type.Object({
  ...InventoryCommon,
  l3NetworkUuid: Uuid,
  startIp: Type.String(),
  endIp: Type.String(),
  netmask: Type.String(),
  gateway: Type.String(),
  networkCidr: Type.String(),
  prefixLen: Type.Integer(),
  ipVersion: Type.Integer(),
});
export type IpRangeInventory = Static<typeof IpRangeInventory>;

export const NetworkServiceRefInventory = Type.Object({
  l3NetworkUuid: Uuid,
  networkServiceProviderUuid: Uuid,
  networkServiceType: Type.String(),
});

export const L3NetworkInventory = Type.Object({
  ...InventoryCommon,
  type: Type.String(),
  zoneUuid: Uuid,
  l2NetworkUuid: Uuid,
  state: Type.String(),
  dnsDomain: Type.Union([Type.String(), Type.Null()]),
  system: Type.Boolean(),
  category: Type.String(),
  ipVersion: Type.Integer(),
  dns: Type.Array(Type.String()),
  ipRanges: Type.Array(IpRangeInventory),
  networkServices: Type.Array(NetworkServiceRefInventory),
});
export type L3NetworkInventory = Static<typeof L3NetworkInventory>;

export const NetworkServiceProviderInventory = Type.Object({
  uuid: Uuid,
  name: Type.String(),
  description: Type.String(),
  type: Type.String(),
  networkServiceTypes: Type.Array(Type.String()),
  attachedL2NetworkUuids: Type.Array(Uuid),
  createDate: DateTime,
  lastOpDate: DateTime,
});
export type NetworkServiceProviderInventory = Static<typeof NetworkServiceProviderInventory>;

export const VmNicInventory = Type.Object({
  uuid: Uuid,
  vmInstanceUuid: Uuid,
  l3NetworkUuid: Uuid,
  ip: Type.String(),
  mac: Type.String(),
  netmask: Type.String(),
  gateway: Type.String(),
  ipVersion: Type.Integer(),
  deviceId: Type.Integer(),
  internalName: Type.String(),
  driverType: Type.String(),
  type: Type.String(),
  hypervisorType: Type.String(),
  usedIpUuid: Type.Union([Uuid, Type.Null()]),
  createDate: DateTime,
  lastOpDate: DateTime,
});
export type VmNicInventory = Static<typeof VmNicInventory>;
const Bytes = Type.Integer({ minimum: 0, description: "bytes" });
const NullableString = Type.Union([Type.String(), Type.Null()]);

export const BackupStorageInventory = Type.Object({
  ...InventoryCommon,
  type: Type.Literal("ImageStoreBackupStorage"),
  url: Type.String({ description: "directory of the image store on its host" }),
  hostname: Type.String({ description: "management IP of the host whose agent runs the store" }),
  state: Type.Union([Type.Literal("Enabled"), Type.Literal("Disabled")]),
  status: Type.Union(["Connecting", "Connected", "Disconnected"].map((s) => Type.Literal(s))),
  totalCapacity: Bytes,
  availableCapacity: Bytes,
  attachedZoneUuids: Type.Array(Uuid),
  lastError: NullableString,
});
export type BackupStorageInventory = Static<typeof BackupStorageInventory>;

export const ImageBackupStorageRefInventory = Type.Object({
  imageUuid: Uuid,
  backupStorageUuid: Uuid,
  status: Type.String(),
  installPath: NullableString,
  lastError: NullableString,
  createDate: DateTime,
  lastOpDate: DateTime,
});

export const ImageInventory = Type.Object({
  ...InventoryCommon,
  state: Type.Union([Type.Literal("Enabled"), Type.Literal("Disabled")]),
  status: Type.Union(
    ["Creating", "Downloading", "Ready", "Error", "Deleted"].map((s) => Type.Literal(s)),
  ),
  url: Type.String({ description: "source URL without its query string" }),
  mediaType: Type.String(),
  format: Type.String({
    description:
      "qcow2, raw or iso as qemu-img detected it, or tar for a container root filesystem",
  }),
  platform: Type.String(),
  guestOsType: NullableString,
  size: Type.Integer({ description: "virtual size in bytes" }),
  actualSize: Type.Integer({ description: "file size in bytes" }),
  md5Sum: NullableString,
  sha256: NullableString,
  system: Type.Boolean(),
  backupStorageRefs: Type.Array(ImageBackupStorageRefInventory),
  lastError: NullableString,
});
export type ImageInventory = Static<typeof ImageInventory>;

export const PrimaryStorageInventory = Type.Object({
  ...InventoryCommon,
  type: Type.Union([Type.Literal("LocalStorage"), Type.Literal("SharedMountPoint")]),
  url: Type.String(),
  mountPath: Type.String(),
  zoneUuid: Uuid,
  state: Type.Union(["Enabled", "Disabled", "Maintenance"].map((s) => Type.Literal(s))),
  status: Type.Union(["Connecting", "Connected", "Disconnected"].map((s) => Type.Literal(s))),
  totalCapacity: Bytes,
  availableCapacity: Type.Integer({ description: "bytes not reserved by volumes" }),
  totalPhysicalCapacity: Bytes,
  availablePhysicalCapacity: Bytes,
  attachedClusterUuids: Type.Array(Uuid),
  lastError: NullableString,
});
export type PrimaryStorageInventory = Static<typeof PrimaryStorageInventory>;

export const ImageCacheInventory = Type.Object({
  id: Uuid,
  uuid: Uuid,
  primaryStorageUuid: Uuid,
  hostUuid: Type.Union([Uuid, Type.Null()]),
  imageUuid: Uuid,
  installUrl: Type.String(),
  size: Bytes,
  actualSize: Bytes,
  md5sum: NullableString,
  state: Type.String(),
  createDate: DateTime,
  lastOpDate: DateTime,
});

export const VolumeInventory = Type.Object({
  ...InventoryCommon,
  type: Type.Union([Type.Literal("Root"), Type.Literal("Data")]),
  vmInstanceUuid: Type.Union([Uuid, Type.Null()]),
  primaryStorageUuid: Type.Union([Uuid, Type.Null()]),
  rootImageUuid: Type.Union([Uuid, Type.Null()]),
  diskOfferingUuid: Type.Union([Uuid, Type.Null()]),
  format: Type.String(),
  size: Type.Integer({ description: "virtual size in bytes" }),
  actualSize: Bytes,
  deviceId: Type.Union([Type.Integer(), Type.Null()]),
  state: Type.Union([Type.Literal("Enabled"), Type.Literal("Disabled")]),
  status: Type.Union(
    ["Creating", "Ready", "NotInstantiated", "Deleted"].map((s) => Type.Literal(s)),
  ),
  installPath: NullableString,
  isShareable: Type.Boolean(),
  lastError: NullableString,
});
export type VolumeInventory = Static<typeof VolumeInventory>;

export const VmInstanceInventory = Type.Object({
  ...InventoryCommon,
  zoneUuid: Type.Union([Uuid, Type.Null()]),
  clusterUuid: Type.Union([Uuid, Type.Null()]),
  hostUuid: Type.Union([Uuid, Type.Null()]),
  lastHostUuid: Type.Union([Uuid, Type.Null()]),
  imageUuid: Type.Union([Uuid, Type.Null()]),
  instanceOfferingUuid: Type.Union([Uuid, Type.Null()]),
  rootVolumeUuid: Type.Union([Uuid, Type.Null()]),
  defaultL3NetworkUuid: Type.Union([Uuid, Type.Null()]),
  type: Type.String(),
  hypervisorType: Type.String(),
  state: Type.String(),
  cpuNum: Type.Integer(),
  memorySize: Type.Integer(),
  platform: Type.String(),
  allocatorStrategy: Type.Union([Type.String(), Type.Null()]),
  vmNics: Type.Array(VmNicInventory, { description: "the VM's NICs in device order" }),
  allVolumes: Type.Array(VolumeInventory, {
    description: "the root volume and the attached data volumes in device order",
  }),
  vmCdRoms: Type.Array(
    Type.Object({
      vmInstanceUuid: Uuid,
      deviceId: Type.Integer(),
      isoUuid: Uuid,
      isoInstallPath: Type.String(),
    }),
    { description: "the ISO image in the VM's CD-ROM drive, as ZStack's VmCdRomInventory" },
  ),
});
export type VmInstanceInventory = Static<typeof VmInstanceInventory>;

export const VolumeSnapshotInventory = Type.Object({
  ...InventoryCommon,
  volumeUuid: Uuid,
  primaryStorageUuid: Uuid,
  parentUuid: Type.Union([Uuid, Type.Null()]),
  volumeType: Type.String(),
  primaryStorageInstallPath: Type.String(),
  size: Bytes,
  state: Type.String(),
  status: Type.String(),
  latest: Type.Boolean(),
  format: Type.String(),
  type: Type.String(),
});
export type VolumeSnapshotInventory = Static<typeof VolumeSnapshotInventory>;

export const AlarmInventory = Type.Object({
  ...InventoryCommon,
  namespace: Type.String(),
  metricName: Type.String(),
  comparisonOperator: Type.String(),
  threshold: Type.Number(),
  period: Type.Integer(),
  repeatCount: Type.Integer(),
  labels: Type.Array(Type.Object({ key: Type.String(), op: Type.String(), value: Type.String() })),
  state: Type.String(),
  status: Type.String(),
  lastStatusChangeDate: Type.Union([DateTime, Type.Null()]),
});
export type AlarmInventory = Static<typeof AlarmInventory>;
