import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";

/** Agent command bodies for the L2 and L3 networks of a host (see the agent's network/types.ts). */

type Row = Record<string, unknown>;

export type L2Spec =
  | { type: "NoVlan"; l2NetworkUuid: string; physicalInterface?: string }
  | { type: "Vlan"; l2NetworkUuid: string; physicalInterface: string; vlanId: number }
  | { type: "Vxlan"; l2NetworkUuid: string; vni: number; vtepCidr: string; peerVteps: string[] };

export interface L3Spec {
  l3NetworkUuid: string;
  l2: L2Spec;
  cidr: string;
  gateway: string;
  dhcpServerIp: string;
  dnsServers: string[];
  dnsDomain?: string;
}

/** The L2 spec as the agent on `hostUuid` needs it; VXLAN peers are the pool's other VTEPs. */
export async function l2SpecFor(core: Core, l2: Row, hostUuid: string): Promise<L2Spec> {
  const l2NetworkUuid = String(l2.uuid);

  switch (l2.type) {
    case "L2NoVlanNetwork":
      return l2.physicalInterface
        ? { type: "NoVlan", l2NetworkUuid, physicalInterface: String(l2.physicalInterface) }
        : { type: "NoVlan", l2NetworkUuid };
    case "L2VlanNetwork":
      return {
        type: "Vlan",
        l2NetworkUuid,
        physicalInterface: String(l2.physicalInterface),
        vlanId: Number(l2.vlan),
      };
    case "VxlanNetwork": {
      const pool = await core.kysely
        .selectFrom("l2Networks")
        .select("vtepCidr")
        .where("uuid", "=", String(l2.poolUuid))
        .executeTakeFirstOrThrow();
      const peers = await core.kysely
        .selectFrom("vteps")
        .select("vtepIp")
        .where("poolUuid", "=", String(l2.poolUuid))
        .where("hostUuid", "!=", hostUuid)
        .execute();
      return {
        type: "Vxlan",
        l2NetworkUuid,
        vni: Number(l2.vni),
        vtepCidr: String(pool.vtepCidr),
        peerVteps: peers.map((peer) => peer.vtepIp),
      };
    }
    default:
      throw new ApiError(
        "invalidState",
        `L2 network ${l2NetworkUuid} is a ${String(l2.type)}; VM NICs need a NoVlan, VLAN or VXLAN network`,
      );
  }
}

/** The L3 spec for DHCP and NAT: the CIDR and gateway of its ranges, its DNS servers. */
export async function l3SpecFor(
  core: Core,
  l3: Row,
  l2: L2Spec,
  dhcpServerIp: string,
  withDns: boolean,
): Promise<L3Spec> {
  const l3NetworkUuid = String(l3.uuid);
  const range = await core.kysely
    .selectFrom("ipRanges")
    .select(["networkCidr", "gateway"])
    .where("l3NetworkUuid", "=", l3NetworkUuid)
    .executeTakeFirst();

  if (!range) {
    throw new ApiError(
      "invalidState",
      `L3 network ${l3NetworkUuid} has no IP range; add one before starting VMs on it`,
    );
  }

  const dns = withDns
    ? await core.kysely
        .selectFrom("l3Dns")
        .select("dns")
        .where("l3NetworkUuid", "=", l3NetworkUuid)
        .orderBy("position")
        .execute()
    : [];
  return {
    l3NetworkUuid,
    l2,
    cidr: range.networkCidr,
    gateway: range.gateway,
    dhcpServerIp,
    dnsServers: dns.map((entry) => entry.dns),
    ...(l3.dnsDomain ? { dnsDomain: String(l3.dnsDomain) } : {}),
  };
}
