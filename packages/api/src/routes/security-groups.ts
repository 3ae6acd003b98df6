import { Type } from "@sinclair/typebox";
import {
  CreateCommon,
  DateTime,
  Description,
  InventoryCommon,
  Name,
  Strict,
  Uuid,
} from "../common.js";
import { type ApiRoute, crud } from "./declare.js";

const IPV4 =
  "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";

const Port = Type.Integer({ minimum: 1, maximum: 65535 });
const NullableString = Type.Union([Type.String(), Type.Null()]);
const NullablePort = Type.Union([Type.Integer(), Type.Null()]);

export const SecurityGroupRuleInventory = Type.Object({
  uuid: Uuid,
  securityGroupUuid: Uuid,
  type: Type.Union([Type.Literal("Ingress"), Type.Literal("Egress")]),
  ipVersion: Type.Integer(),
  priority: Type.Integer(),
  protocol: Type.String(),
  startPort: NullablePort,
  endPort: NullablePort,
  allowedCidr: NullableString,
  remoteSecurityGroupUuid: Type.Union([Uuid, Type.Null()]),
  state: Type.String(),
  description: NullableString,
  createDate: DateTime,
  lastOpDate: DateTime,
});

export const SecurityGroupInventory = Type.Object({
  ...InventoryCommon,
  state: Type.String(),
  ipVersion: Type.Integer(),
  rules: Type.Array(SecurityGroupRuleInventory),
  attachedL3NetworkUuids: Type.Array(Uuid),
  vmNicUuids: Type.Array(Uuid),
});

/** One rule of `addSecurityGroupRule`, with ZStack's field names. */
const RuleParam = Strict({
  type: Type.Union([Type.Literal("Ingress"), Type.Literal("Egress")]),
  protocol: Type.Union(["TCP", "UDP", "ICMP", "ALL"].map((name) => Type.Literal(name))),
  startPort: Type.Optional(Port),
  endPort: Type.Optional(Port),
  allowedCidr: Type.Optional(
    Type.String({
      pattern: `^${IPV4}/([0-9]|[12][0-9]|3[0-2])$`,
      description: "an IPv4 network such as 10.0.0.0/24",
    }),
  ),
  remoteSecurityGroupUuid: Type.Optional(Uuid),
  description: Type.Optional(Description),
});

const VmNicUuids = Type.Array(Uuid, { minItems: 1, maxItems: 1000 });

export const securityGroupRoutes = [
  ...crud({
    resource: "SecurityGroup",
    api: "SecurityGroup",
    path: "/security-groups",
    inventory: SecurityGroupInventory,
    create: Strict({
      name: Name,
      description: Type.Optional(Description),
      ipVersion: Type.Optional(Type.Literal(4)),
      ...CreateCommon,
    }),
  }),
  {
    name: "addSecurityGroupRule",
    method: "POST",
    path: "/security-groups/{securityGroupUuid}/rules",
    kind: "create",
    params: Strict({ rules: Type.Array(RuleParam, { minItems: 1, maxItems: 100 }) }),
    inventory: SecurityGroupInventory,
    resource: "SecurityGroup",
    summary: "Add allow rules to a security group and push them to the hosts of its VM NICs",
  },
  {
    name: "querySecurityGroupRule",
    method: "GET",
    path: "/security-groups/rules",
    kind: "query",
    resource: "SecurityGroupRule",
    inventory: SecurityGroupRuleInventory,
    summary: "Query security group rules",
  },
  {
    name: "deleteSecurityGroupRule",
    method: "DELETE",
    path: "/security-groups/rules",
    kind: "delete",
    resource: "SecurityGroupRule",
    summary: "Delete security group rules given as ruleUuids in the query string",
  },
  {
    name: "attachSecurityGroupToL3Network",
    method: "POST",
    path: "/security-groups/{securityGroupUuid}/l3-networks/{l3NetworkUuid}",
    kind: "create",
    params: Strict({}),
    inventory: SecurityGroupInventory,
    resource: "SecurityGroup",
    summary: "Attach a security group to an L3 network with the SecurityGroup service",
  },
  {
    name: "detachSecurityGroupFromL3Network",
    method: "DELETE",
    path: "/security-groups/{securityGroupUuid}/l3-networks/{l3NetworkUuid}",
    kind: "delete",
    inventory: SecurityGroupInventory,
    resource: "SecurityGroup",
    summary: "Detach a security group from an L3 network, removing its NICs on that network",
  },
  {
    name: "addVmNicToSecurityGroup",
    method: "POST",
    path: "/security-groups/{securityGroupUuid}/vm-instances/nics",
    kind: "create",
    params: Strict({ vmNicUuids: VmNicUuids }),
    inventory: SecurityGroupInventory,
    resource: "SecurityGroup",
    summary: "Put VM NICs in a security group attached to their L3 network",
  },
  {
    name: "deleteVmNicFromSecurityGroup",
    method: "DELETE",
    path: "/security-groups/{securityGroupUuid}/vm-instances/nics",
    kind: "delete",
    resource: "SecurityGroup",
    summary: "Take VM NICs, given as vmNicUuids in the query string, out of a security group",
  },
] as const satisfies readonly ApiRoute[];
