import { Type } from "@sinclair/typebox";
import { CreateCommon, Description, Name, StateEvent, Strict, Uuid } from "../common.js";
import * as Inventory from "../inventories.js";
import { type ApiRoute, crud } from "./declare.js";

const IPV4_PATTERN =
  "^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$";

/** A dotted-quad IPv4 address. */
const Ipv4 = Type.String({ pattern: IPV4_PATTERN, description: "an IPv4 address" });

/** An IPv4 network such as 10.0.0.0/24. */
const Cidr = Type.String({
  pattern: `${IPV4_PATTERN.slice(0, -1)}/([0-9]|[12][0-9]|3[0-2])$`,
  description: "an IPv4 network such as 10.0.0.0/24",
});

/** A Linux interface name: at most 15 characters. */
const InterfaceName = Type.String({
  pattern: "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$",
  description: "a host interface name such as eth1, at most 15 characters",
});

const DnsDomain = Type.String({
  maxLength: 253,
  pattern: "^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$",
});

const Vni = Type.Integer({ minimum: 1, maximum: 16_777_214 });

const l2Common = {
  name: Name,
  description: Type.Optional(Description),
  zoneUuid: Uuid,
  ...CreateCommon,
};

const l2Create = <const N extends string>(
  name: N,
  path: string,
  params: Record<string, unknown>,
  summary: string,
) =>
  ({
    name,
    method: "POST",
    path,
    kind: "create",
    adminOnly: true,
    params: Strict({ ...l2Common, ...(params as Record<string, never>) }),
    inventory: Inventory.L2NetworkInventory,
    resource: "L2Network",
    summary,
  }) satisfies ApiRoute;

const l2Routes = [
  ...crud({
    resource: "L2Network",
    api: "L2Network",
    path: "/l2-networks",
    inventory: Inventory.L2NetworkInventory,
    adminOnly: true,
  }),
  l2Create(
    "createL2NoVlanNetwork",
    "/l2-networks/no-vlan",
    { physicalInterface: Type.Optional(InterfaceName) },
    "Create an L2 network on a host interface, or an isolated bridge per host without one",
  ),
  l2Create(
    "createL2VlanNetwork",
    "/l2-networks/vlan",
    { physicalInterface: InterfaceName, vlan: Type.Integer({ minimum: 1, maximum: 4094 }) },
    "Create an 802.1Q VLAN L2 network on a host interface",
  ),
  l2Create(
    "createL2VxlanNetworkPool",
    "/l2-networks/vxlan-pool",
    {
      physicalInterface: Type.Optional(InterfaceName),
      vtepCidr: Cidr,
    },
    "Create a VXLAN pool: VNI ranges and the CIDR of the hosts' VTEP addresses",
  ),
  l2Create(
    "createL2VxlanNetwork",
    "/l2-networks/vxlan",
    { poolUuid: Uuid, vni: Type.Optional(Vni) },
    "Create a VXLAN L2 network in a pool; without vni the next free one is taken",
  ),
  {
    name: "createVniRange",
    method: "POST",
    path: "/l2-networks/vxlan-pool/{l2NetworkUuid}/vni-ranges",
    kind: "create",
    adminOnly: true,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      startVni: Vni,
      endVni: Vni,
      ...CreateCommon,
    }),
    inventory: Inventory.VniRangeInventory,
    resource: "VniRange",
    summary: "Add a VNI range to a VXLAN pool",
  },
  {
    name: "queryVniRange",
    method: "GET",
    path: "/l2-networks/vxlan-pool/vni-ranges",
    kind: "query",
    adminOnly: true,
    resource: "VniRange",
    inventory: Inventory.VniRangeInventory,
    summary: "Query VNI ranges",
  },
  {
    name: "deleteVniRange",
    method: "DELETE",
    path: "/l2-networks/vxlan-pool/vni-ranges/{uuid}",
    kind: "delete",
    adminOnly: true,
    resource: "VniRange",
    summary: "Delete a VNI range no VXLAN network uses",
  },
  {
    name: "attachL2NetworkToCluster",
    method: "POST",
    path: "/l2-networks/{l2NetworkUuid}/clusters/{clusterUuid}",
    kind: "create",
    adminOnly: true,
    params: Strict({}),
    inventory: Inventory.L2NetworkInventory,
    resource: "L2Network",
    summary: "Attach an L2 network to a cluster after checking every connected host of it",
  },
  {
    name: "detachL2NetworkFromCluster",
    method: "DELETE",
    path: "/l2-networks/{l2NetworkUuid}/clusters/{clusterUuid}",
    kind: "delete",
    adminOnly: true,
    inventory: Inventory.L2NetworkInventory,
    resource: "L2Network",
    summary: "Detach an L2 network from a cluster",
  },
] as const satisfies readonly ApiRoute[];

const l3Routes = [
  ...crud({
    resource: "L3Network",
    api: "L3Network",
    path: "/l3-networks",
    inventory: Inventory.L3NetworkInventory,
    adminOnly: true,
    changeState: true,
    update: Strict({
      name: Type.Optional(Name),
      description: Type.Optional(Description),
      dnsDomain: Type.Optional(DnsDomain),
      category: Type.Optional(StateEvent(["Private", "Public", "System"])),
    }),
    create: Strict({
      name: Name,
      description: Type.Optional(Description),
      l2NetworkUuid: Uuid,
      type: Type.Optional(Type.Literal("L3BasicNetwork")),
      category: Type.Optional(StateEvent(["Private", "Public", "System"])),
      ipVersion: Type.Optional(Type.Literal(4)),
      dnsDomain: Type.Optional(DnsDomain),
      system: Type.Optional(Type.Boolean()),
      ...CreateCommon,
    }),
  }),
  {
    name: "addDnsToL3Network",
    method: "POST",
    path: "/l3-networks/{l3NetworkUuid}/dns",
    kind: "create",
    adminOnly: true,
    params: Strict({ dns: Ipv4 }),
    inventory: Inventory.L3NetworkInventory,
    resource: "L3Network",
    summary: "Add an upstream DNS server to an L3 network",
  },
  {
    name: "removeDnsFromL3Network",
    method: "DELETE",
    path: "/l3-networks/{l3NetworkUuid}/dns/{dns}",
    kind: "delete",
    adminOnly: true,
    resource: "L3Network",
    summary: "Remove a DNS server from an L3 network",
  },
  {
    name: "addIpRange",
    method: "POST",
    path: "/l3-networks/{l3NetworkUuid}/ip-ranges",
    kind: "create",
    adminOnly: true,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      startIp: Ipv4,
      endIp: Ipv4,
      netmask: Ipv4,
      gateway: Ipv4,
      ...CreateCommon,
    }),
    inventory: Inventory.IpRangeInventory,
    resource: "IpRange",
    summary: "Add an IPv4 range to an L3 network",
  },
  {
    name: "addIpRangeByNetworkCidr",
    method: "POST",
    path: "/l3-networks/{l3NetworkUuid}/ip-ranges/by-cidr",
    kind: "create",
    adminOnly: true,
    params: Strict({
      name: Name,
      description: Type.Optional(Description),
      networkCidr: Cidr,
      gateway: Type.Optional(Ipv4),
      ...CreateCommon,
    }),
    inventory: Inventory.IpRangeInventory,
    resource: "IpRange",
    summary: "Add every address of a CIDR but the gateway, network and broadcast as a range",
  },
  {
    name: "queryIpRange",
    method: "GET",
    path: "/l3-networks/ip-ranges",
    kind: "query",
    resource: "IpRange",
    inventory: Inventory.IpRangeInventory,
    summary: "Query IP ranges",
  },
  {
    name: "deleteIpRange",
    method: "DELETE",
    path: "/l3-networks/ip-ranges/{uuid}",
    kind: "delete",
    adminOnly: true,
    resource: "IpRange",
    summary: "Delete an IP range none of whose addresses is in use",
  },
  {
    name: "updateIpRange",
    method: "PUT",
    path: "/l3-networks/ip-ranges/{uuid}/actions",
    kind: "action",
    adminOnly: true,
    params: Strict({ name: Type.Optional(Name), description: Type.Optional(Description) }),
    inventory: Inventory.IpRangeInventory,
    resource: "IpRange",
    summary: "Rename an IP range or change its description",
  },
  {
    name: "attachNetworkServiceToL3Network",
    method: "POST",
    path: "/l3-networks/{l3NetworkUuid}/network-services",
    kind: "create",
    adminOnly: true,
    params: Strict({
      networkServices: Type.Record(
        Uuid,
        Type.Array(Type.String({ maxLength: 64 }), { maxItems: 16 }),
      ),
    }),
    inventory: Inventory.L3NetworkInventory,
    resource: "L3Network",
    summary: "Enable network services of providers on an L3 network",
  },
  {
    name: "queryNetworkServiceProvider",
    method: "GET",
    path: "/network-services/providers",
    kind: "query",
    resource: "NetworkServiceProvider",
    inventory: Inventory.NetworkServiceProviderInventory,
    summary: "Query network service providers",
  },
  {
    name: "getIpAddressCapacity",
    method: "GET",
    path: "/ip-capacity",
    kind: "sync",
    summary: "Count total, used and free addresses by L3 networks, IP ranges or zones",
  },
  {
    name: "getL3NetworkIpStatistic",
    method: "GET",
    path: "/l3-networks/{l3NetworkUuid}/ip-statistic",
    kind: "sync",
    summary: "List the used addresses of an L3 network with their VM NICs",
  },
  {
    name: "queryVmNic",
    method: "GET",
    path: "/vm-instances/nics",
    kind: "query",
    resource: "VmNic",
    inventory: Inventory.VmNicInventory,
    summary: "Query VM NICs",
  },
] as const satisfies readonly ApiRoute[];

export const networkRoutes = [...l2Routes, ...l3Routes] as const satisfies readonly ApiRoute[];
