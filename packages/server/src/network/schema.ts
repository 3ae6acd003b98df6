/** Tables of the network module; dates are ISO 8601 strings in UTC, as everywhere. */

interface ResourceColumns {
  uuid: string;
  name: string;
  description: string | null;
  accountUuid: string;
  createDate: string;
  lastOpDate: string;
  version: number;
}

export interface L2NetworkTable extends ResourceColumns {
  zoneUuid: string;
  /** L2NoVlanNetwork, L2VlanNetwork, VxlanNetworkPool or VxlanNetwork, as ZStack names them. */
  type: string;
  /** Unset for an isolated bridge of its own (NoVlan) and for VXLAN networks. */
  physicalInterface: string | null;
  vlan: number | null;
  vni: number | null;
  /** VXLAN pool of a VXLAN network. */
  poolUuid: string | null;
  /** CIDR in which every host of a VXLAN pool has its VTEP address. */
  vtepCidr: string | null;
}

export interface L2NetworkClusterRefTable {
  l2NetworkUuid: string;
  clusterUuid: string;
  createDate: string;
}

export interface VniRangeTable extends ResourceColumns {
  l2NetworkUuid: string;
  startVni: number;
  endVni: number;
}

/** The VTEP address each host has in a VXLAN pool, found when the pool attaches to its cluster. */
export interface VtepTable {
  poolUuid: string;
  hostUuid: string;
  clusterUuid: string;
  vtepIp: string;
  createDate: string;
}

export interface L3NetworkTable extends ResourceColumns {
  zoneUuid: string;
  l2NetworkUuid: string;
  type: string;
  category: string;
  ipVersion: number;
  dnsDomain: string | null;
  state: string;
  system: number;
}

export interface L3DnsTable {
  l3NetworkUuid: string;
  dns: string;
  position: number;
  createDate: string;
}

export interface IpRangeTable extends ResourceColumns {
  l3NetworkUuid: string;
  startIp: string;
  endIp: string;
  netmask: string;
  gateway: string;
  networkCidr: string;
  prefixLen: number;
  ipVersion: number;
  /** startIp and endIp as 32-bit numbers, for ordering and overlap checks in SQL. */
  startLong: number;
  endLong: number;
}

/** Every allocated address; (l3NetworkUuid, ip) is unique, so two allocations never collide. */
export interface UsedIpTable {
  uuid: string;
  l3NetworkUuid: string;
  ipRangeUuid: string;
  ip: string;
  ipInLong: number;
  netmask: string;
  gateway: string;
  /** `VmNic` or `DHCP` (the L3 network's DHCP server address). */
  usedFor: string;
  vmNicUuid: string | null;
  createDate: string;
}

export interface NetworkServiceProviderTable {
  uuid: string;
  name: string;
  description: string;
  type: string;
  /** JSON array of the service types the provider offers. */
  networkServiceTypes: string;
  createDate: string;
  lastOpDate: string;
}

export interface L3NetworkServiceRefTable {
  l3NetworkUuid: string;
  networkServiceProviderUuid: string;
  networkServiceType: string;
}

export interface VmNicTable {
  uuid: string;
  vmInstanceUuid: string;
  l3NetworkUuid: string;
  usedIpUuid: string | null;
  ip: string;
  mac: string;
  netmask: string;
  gateway: string;
  deviceId: number;
  /** Host device of the NIC (the tap), at most 15 characters. */
  internalName: string;
  driverType: string;
  type: string;
  accountUuid: string;
  createDate: string;
  lastOpDate: string;
}

/** NICs prepared on a host, so release knows what the host still needs. */
export interface VmNicHostRefTable {
  nicUuid: string;
  hostUuid: string;
  vmInstanceUuid: string;
  /** Kept so the host can be cleaned up even after the NIC row is gone. */
  mac: string;
  ip: string;
  l3NetworkUuid: string;
  l2NetworkUuid: string;
  createDate: string;
}

export interface NetworkTables {
  l2Networks: L2NetworkTable;
  l2NetworkClusterRefs: L2NetworkClusterRefTable;
  vniRanges: VniRangeTable;
  vteps: VtepTable;
  l3Networks: L3NetworkTable;
  l3Dns: L3DnsTable;
  ipRanges: IpRangeTable;
  usedIps: UsedIpTable;
  networkServiceProviders: NetworkServiceProviderTable;
  l3NetworkServiceRefs: L3NetworkServiceRefTable;
  vmNics: VmNicTable;
  vmNicHostRefs: VmNicHostRefTable;
}
