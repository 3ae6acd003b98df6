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
});
export type HostInventory = Static<typeof HostInventory>;

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
});
export type VmInstanceInventory = Static<typeof VmInstanceInventory>;
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
