/** Tables of security groups; dates are ISO 8601 strings in UTC, as everywhere. */

export interface SecurityGroupTable {
  uuid: string;
  name: string;
  description: string | null;
  accountUuid: string;
  state: string;
  ipVersion: number;
  createDate: string;
  lastOpDate: string;
  version: number;
}

export interface SecurityGroupRuleTable {
  uuid: string;
  securityGroupUuid: string;
  /** Ingress or Egress, as ZStack spells them. */
  type: string;
  /** TCP, UDP, ICMP or ALL. */
  protocol: string;
  /** Unset for ICMP and ALL, and for TCP/UDP rules that allow every port. */
  startPort: number | null;
  endPort: number | null;
  /** Unset with a remote group, or for any address. */
  allowedCidr: string | null;
  remoteSecurityGroupUuid: string | null;
  ipVersion: number;
  /** Order of the rule in its group, from 1, as added. */
  priority: number;
  state: string;
  description: string | null;
  /** The group's owner, copied so rules can be queried with owner visibility. */
  accountUuid: string;
  createDate: string;
  lastOpDate: string;
}

export interface SecurityGroupL3NetworkRefTable {
  securityGroupUuid: string;
  l3NetworkUuid: string;
  createDate: string;
}

export interface VmNicSecurityGroupRefTable {
  vmNicUuid: string;
  securityGroupUuid: string;
  vmInstanceUuid: string;
  createDate: string;
}

/**
 * A host whose last security-group push failed, as ZStack's SecurityGroupFailureHostVO. The row
 * stays until a push of the host's full rule set succeeds, and goes with its host.
 */
export interface SecurityGroupFailureHostTable {
  hostUuid: string;
  /** Failed pushes since the last success. */
  attempts: number;
  lastError: string;
  createDate: string;
  lastOpDate: string;
}

export interface SecurityGroupTables {
  securityGroups: SecurityGroupTable;
  securityGroupRules: SecurityGroupRuleTable;
  securityGroupL3NetworkRefs: SecurityGroupL3NetworkRefTable;
  vmNicSecurityGroupRefs: VmNicSecurityGroupRefTable;
  securityGroupFailureHosts: SecurityGroupFailureHostTable;
}
