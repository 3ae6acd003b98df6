/**
 * JSON bodies of the agent's `/network/...` commands. The server sends them; the functions in
 * this directory take them as they are.
 */

/** L2 network without tagging: the bridge enslaves the physical interface as it is. */
export interface L2NoVlanSpec {
  type: "NoVlan";
  l2NetworkUuid: string;
  /** Host interface to enslave; unset gives a bridge local to this host. */
  physicalInterface?: string;
}

/** L2 network on an 802.1Q sub-interface of a physical interface. */
export interface L2VlanSpec {
  type: "Vlan";
  l2NetworkUuid: string;
  physicalInterface: string;
  vlanId: number;
}

/** L2 network as a VXLAN segment with unicast head-end replication to the other hosts. */
export interface L2VxlanSpec {
  type: "Vxlan";
  l2NetworkUuid: string;
  vni: number;
  /** CIDR of the VXLAN pool; this host's VTEP is its address inside it. */
  vtepCidr: string;
  /** VTEP addresses of the other hosts on this L2 network; this host's own is ignored. */
  peerVteps: string[];
}

/** Body of `/network/l2/ensure` and `/network/l2/release`. */
export type L2NetworkSpec = L2NoVlanSpec | L2VlanSpec | L2VxlanSpec;

/** Body of `/network/vxlan/peers/sync`. */
export interface SyncVxlanPeersCmd {
  vni: number;
  vtepCidr: string;
  peerVteps: string[];
}

/** An L3 network as far as DHCP, DNS, metadata and NAT on one host need it. */
export interface L3NetworkSpec {
  l3NetworkUuid: string;
  /** The L2 network this L3 network lives on. */
  l2: L2NetworkSpec;
  /** IPv4 network, for example `10.0.0.0/24`. */
  cidr: string;
  gateway: string;
  /** Address of this L3 network's DHCP server; the same on every host. */
  dhcpServerIp: string;
  /** Upstream DNS servers the DHCP namespace forwards to. */
  dnsServers: string[];
  /** DNS domain of the VMs, for example `tstack.local`; unset leaves names unqualified. */
  dnsDomain?: string;
  /** DHCP lease time in seconds; 86400 when unset. */
  leaseSeconds?: number;
  /** Interface MTU handed to guests (option 26); unset sends none. */
  mtu?: number;
}

/** One VM NIC's DHCP reservation. */
export interface DhcpEntry {
  mac: string;
  ip: string;
  hostname: string;
}

/** Body of `/network/dhcp/apply`: prepares the L3's DHCP namespace and adds reservations. */
export interface ApplyDhcpCmd {
  l3: L3NetworkSpec;
  entries: DhcpEntry[];
}

/** Body of `/network/dhcp/release`: removes reservations by MAC address. */
export interface ReleaseDhcpCmd {
  l3NetworkUuid: string;
  macs: string[];
}

/** Body of `/network/userdata/apply`. */
export interface ApplyUserdataCmd {
  l3NetworkUuid: string;
  /** The VM NIC address the guest fetches its metadata from. */
  ip: string;
  /** VM uuid, served as `instance-id`. */
  vmUuid: string;
  hostname: string;
  /** cloud-init user-data; unset makes `/latest/user-data` return 404. */
  userdata?: string;
}

/** Body of `/network/userdata/release`. */
export interface ReleaseUserdataCmd {
  l3NetworkUuid: string;
  ip: string;
}

/** Protocol a security-group rule matches. */
export type SecurityGroupProtocol = "tcp" | "udp" | "icmp" | "all";

/** One allow rule of a security group. */
export interface SecurityGroupRule {
  /** `ingress` matches traffic to the VM NIC, `egress` traffic from it. */
  direction: "ingress" | "egress";
  protocol: SecurityGroupProtocol;
  /** First port of the range, tcp and udp only; unset means every port. */
  startPort?: number;
  /** Last port of the range; unset means `startPort`. */
  endPort?: number;
  /** Remote network the rule allows; unset with no remote group means any address. */
  cidr?: string;
  /** Security group whose members' addresses the rule allows; see `remoteGroups`. */
  remoteGroupUuid?: string;
}

/** Security-group rules of one VM NIC on this host. */
export interface NicSecurityRules {
  nicUuid: string;
  /** IPv4 addresses of the NIC, used by rules of other NICs that name its groups. */
  ips: string[];
  rules: SecurityGroupRule[];
}

/** Body of `/network/securitygroup/apply`: replaces the rules of the listed NICs. */
export interface ApplySecurityGroupCmd {
  nics: NicSecurityRules[];
  /** Member addresses of every remote group the rules name, keyed by group uuid. */
  remoteGroups: Record<string, string[]>;
}

/** Body of `/network/securitygroup/remove`. */
export interface RemoveSecurityGroupCmd {
  nicUuids: string[];
}

/** Body of `/network/nat/apply` and `/network/nat/remove`. */
export interface NatCmd {
  l3: L3NetworkSpec;
}
