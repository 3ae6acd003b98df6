import { ApiError } from "@tstack/api";
import type { Kysely, Transaction } from "kysely";
import { isContainer } from "../compute/containers.js";
import { cleanUpOnHost, skipIfUnreachable } from "../compute/hosts/cleanups.js";
import { agentTarget } from "../compute/hosts/connect.js";
import type { NicAttachment, NicService } from "../compute/vm-resources.js";
import type { Core } from "../core/core.js";
import { newUuid, now } from "../core/ids.js";
import type { Database } from "../db/schema.js";
import type { AgentTarget } from "../drivers/agent-client.js";
import { type L2Spec, l2SpecFor, l3SpecFor } from "./host-specs.js";
import { allocateIp, lockL3Addresses, randomMac } from "./ip-allocation.js";
import {
  nicsNamingGroups,
  pushSecurityGroups,
  removeSecurityGroupsOnHost,
} from "./security-groups-push.js";

type Row = Record<string, unknown>;

const MAC_TRIES = 16;

/** Host device of a NIC's tap: `tap` and the first 12 hex digits of its uuid, as the agent names it. */
export function nicTapName(nicUuid: string) {
  return `tap${nicUuid.slice(0, 12)}`;
}

/** The NIC service the VM workflows call; see `NicService` in compute/vm-resources.ts. */
export class FlatNicService implements NicService {
  constructor(private readonly core: Core) {}

  async allocateNics(
    tx: Transaction<Database>,
    request: {
      vmUuid: string;
      accountUuid: string;
      l3NetworkUuids: string[];
      staticIps: Record<string, string>;
    },
  ) {
    const existing = await tx
      .selectFrom("vmNics")
      .select("deviceId")
      .where("vmInstanceUuid", "=", request.vmUuid)
      .execute();
    let deviceId = Math.max(-1, ...existing.map((nic) => Number(nic.deviceId))) + 1;
    await lockL3Addresses(this.core, tx, request.l3NetworkUuids);

    for (const l3NetworkUuid of request.l3NetworkUuids) {
      await this.allocateNic(tx, request, l3NetworkUuid, deviceId);
      deviceId += 1;
    }
  }

  private async allocateNic(
    tx: Transaction<Database>,
    request: { vmUuid: string; accountUuid: string; staticIps: Record<string, string> },
    l3NetworkUuid: string,
    deviceId: number,
  ) {
    const l3 = await tx
      .selectFrom("l3Networks")
      .select(["uuid", "state"])
      .where("uuid", "=", l3NetworkUuid)
      .executeTakeFirst();

    if (!l3) {
      throw new ApiError(
        "invalidArgument",
        `params.l3NetworkUuids: L3 network ${l3NetworkUuid} was not found; pass an existing L3 network`,
      );
    }

    if (l3.state !== "Enabled") {
      throw new ApiError(
        "invalidState",
        `L3 network ${l3NetworkUuid} is ${l3.state}; enable it before creating VMs on it`,
      );
    }

    const nicUuid = newUuid();
    const address = await allocateIp(this.core, tx, l3NetworkUuid, {
      staticIp: request.staticIps[l3NetworkUuid],
      usedFor: "VmNic",
      vmNicUuid: nicUuid,
    });
    const stamp = now();

    for (let attempt = 0; attempt < MAC_TRIES; attempt++) {
      const result = await tx
        .insertInto("vmNics")
        .values({
          uuid: nicUuid,
          vmInstanceUuid: request.vmUuid,
          l3NetworkUuid,
          usedIpUuid: address.usedIpUuid,
          ip: address.ip,
          mac: randomMac(),
          netmask: address.netmask,
          gateway: address.gateway,
          deviceId,
          internalName: nicTapName(nicUuid),
          driverType: "virtio",
          type: "VNIC",
          accountUuid: request.accountUuid,
          createDate: stamp,
          lastOpDate: stamp,
        })
        .onConflict((conflict) => conflict.column("mac").doNothing())
        .executeTakeFirst();

      if (Number(result.numInsertedOrUpdatedRows ?? 0) === 1) {
        return;
      }
    }

    throw new ApiError("internal", `no unused MAC address after ${MAC_TRIES} random tries`);
  }

  async prepareNicsOnHost(vmUuid: string, hostUuid: string, signal?: AbortSignal) {
    const nics = await this.nicsOf(vmUuid);
    const target = await agentTarget(this.core, hostUuid);
    const attachments: NicAttachment[] = [];

    for (const nic of nics) {
      signal?.throwIfAborted();
      attachments.push(await this.prepareNic(nic, hostUuid, target));
    }

    await pushSecurityGroups(
      this.core,
      nics.map((nic) => String(nic.uuid)),
      hostUuid,
    );
    return attachments;
  }

  private async prepareNic(nic: Row, hostUuid: string, target: AgentTarget) {
    const { l3, l2 } = await this.networksOf(String(nic.l3NetworkUuid));
    await this.checkAttached(l2, hostUuid);
    const l2Spec = await l2SpecFor(this.core, l2, hostUuid);

    // Recorded first, so a release after a failure below also undoes what did get done.
    await this.core.kysely
      .insertInto("vmNicHostRefs")
      .values({
        nicUuid: String(nic.uuid),
        hostUuid,
        vmInstanceUuid: String(nic.vmInstanceUuid),
        mac: String(nic.mac),
        ip: String(nic.ip),
        l3NetworkUuid: String(l3.uuid),
        l2NetworkUuid: String(l2.uuid),
        createDate: now(),
      })
      .onConflict((conflict) => conflict.columns(["nicUuid", "hostUuid"]).doNothing())
      .execute();

    const devices = await this.core.agents.call<{ bridge: string }>(
      target,
      "/network/l2/ensure",
      l2Spec,
    );
    await this.applyServices(nic, l3, l2Spec, target);

    return {
      nicUuid: String(nic.uuid),
      mac: String(nic.mac),
      ip: String(nic.ip),
      l3NetworkUuid: String(l3.uuid),
      bridgeName: devices.bridge,
      deviceId: Number(nic.deviceId),
      tapName: String(nic.internalName),
    } satisfies NicAttachment;
  }

  private async applyServices(nic: Row, l3: Row, l2Spec: L2Spec, target: AgentTarget) {
    const services = await this.servicesOf(String(l3.uuid));

    // A container gets its address from the agent and reads no userdata, so its host needs
    // neither dnsmasq entries nor the metadata server for it.
    if (await isContainer(this.core, String(nic.vmInstanceUuid))) {
      services.delete("DHCP");
      services.delete("Userdata");
    }

    if (!services.has("DHCP") && !services.has("SNAT")) {
      return;
    }

    const dhcpIp = await this.dhcpServerIp(String(l3.uuid));
    const spec = await l3SpecFor(this.core, l3, l2Spec, dhcpIp, services.has("DNS"));
    const hostname = await this.hostnameOf(String(nic.vmInstanceUuid), String(nic.ip));

    if (services.has("DHCP")) {
      await this.core.agents.call(target, "/network/dhcp/apply", {
        l3: spec,
        entries: [{ mac: nic.mac, ip: nic.ip, hostname }],
      });
    }

    if (services.has("Userdata")) {
      const userdata = await this.userdataOf(String(nic.vmInstanceUuid));
      await this.core.agents.call(target, "/network/userdata/apply", {
        l3NetworkUuid: l3.uuid,
        ip: nic.ip,
        vmUuid: nic.vmInstanceUuid,
        hostname,
        ...(userdata === undefined ? {} : { userdata }),
      });
    }

    if (services.has("SNAT")) {
      await this.core.agents.call(target, "/network/nat/apply", { l3: spec });
    }
  }

  async releaseNicsOnHost(vmUuid: string, hostUuid: string) {
    const refs = await this.core.kysely
      .selectFrom("vmNicHostRefs")
      .selectAll()
      .where("vmInstanceUuid", "=", vmUuid)
      .where("hostUuid", "=", hostUuid)
      .execute();

    if (refs.length === 0) {
      return;
    }

    const target = await agentTarget(this.core, hostUuid);
    await removeSecurityGroupsOnHost(
      this.core,
      refs.map((ref) => ref.nicUuid),
      hostUuid,
      vmUuid,
    );

    // Per-NIC entries go even from an unreachable host, since the cleanup is kept until it returns.
    for (const ref of refs) {
      const reason = `release VM NIC ${ref.nicUuid}`;
      await cleanUpOnHost(this.core, {
        hostUuid,
        vmUuid,
        path: "/network/userdata/release",
        body: { l3NetworkUuid: ref.l3NetworkUuid, ip: ref.ip },
        reason,
      });
      await cleanUpOnHost(this.core, {
        hostUuid,
        vmUuid,
        path: "/network/dhcp/release",
        body: { l3NetworkUuid: ref.l3NetworkUuid, macs: [ref.mac] },
        reason,
      });
      await this.core.kysely
        .deleteFrom("vmNicHostRefs")
        .where("nicUuid", "=", ref.nicUuid)
        .where("hostUuid", "=", hostUuid)
        .execute();
    }

    // Shared devices are not kept for later: a VM placed after the host returns may need them.
    await skipIfUnreachable(this.core, hostUuid, async () => {
      for (const l3NetworkUuid of new Set(refs.map((ref) => ref.l3NetworkUuid))) {
        await this.releaseL3IfUnused(l3NetworkUuid, hostUuid, target);
      }

      for (const l2NetworkUuid of new Set(refs.map((ref) => ref.l2NetworkUuid))) {
        await this.releaseL2IfUnused(l2NetworkUuid, hostUuid, target);
      }
    });
  }

  private async stillUsed(
    column: "l3NetworkUuid" | "l2NetworkUuid",
    uuid: string,
    hostUuid: string,
  ) {
    const ref = await this.core.kysely
      .selectFrom("vmNicHostRefs")
      .select("nicUuid")
      .where(column, "=", uuid)
      .where("hostUuid", "=", hostUuid)
      .executeTakeFirst();
    return ref !== undefined;
  }

  private async releaseL3IfUnused(l3NetworkUuid: string, hostUuid: string, target: AgentTarget) {
    if (await this.stillUsed("l3NetworkUuid", l3NetworkUuid, hostUuid)) {
      return;
    }

    const services = await this.servicesOf(l3NetworkUuid);

    if (!services.has("SNAT")) {
      return;
    }

    const { l3, l2 } = await this.networksOf(l3NetworkUuid);
    const l2Spec = await l2SpecFor(this.core, l2, hostUuid);
    const dhcpIp = await this.dhcpServerIp(l3NetworkUuid);
    const spec = await l3SpecFor(this.core, l3, l2Spec, dhcpIp, false);
    await this.core.agents.call(target, "/network/nat/remove", { l3: spec });
  }

  private async releaseL2IfUnused(l2NetworkUuid: string, hostUuid: string, target: AgentTarget) {
    if (await this.stillUsed("l2NetworkUuid", l2NetworkUuid, hostUuid)) {
      return;
    }

    const l2 = await this.core.kysely
      .selectFrom("l2Networks")
      .selectAll()
      .where("uuid", "=", l2NetworkUuid)
      .executeTakeFirst();

    if (l2) {
      await this.core.agents.call(
        target,
        "/network/l2/release",
        await l2SpecFor(this.core, l2, hostUuid),
      );
    }
  }

  /**
   * Deletes a VM's NICs and returns their addresses. Groups they belonged to lose members, so
   * the NICs whose rules name those groups as remote get their peer sets again.
   */
  async deleteNics(vmUuid: string) {
    const groups = await this.core.transact(async (tx) => {
      const nics = await tx
        .selectFrom("vmNics")
        .select("uuid")
        .where("vmInstanceUuid", "=", vmUuid)
        .execute();

      if (nics.length === 0) {
        return [];
      }

      const uuids = nics.map((nic) => nic.uuid);
      const refs = await tx
        .selectFrom("vmNicSecurityGroupRefs")
        .select("securityGroupUuid")
        .distinct()
        .where("vmNicUuid", "in", uuids)
        .execute();
      await tx.deleteFrom("usedIps").where("vmNicUuid", "in", uuids).execute();
      await tx.deleteFrom("vmNics").where("uuid", "in", uuids).execute();
      return refs.map((ref) => ref.securityGroupUuid);
    });

    if (groups.length > 0) {
      await pushSecurityGroups(this.core, await nicsNamingGroups(this.core, groups));
    }
  }

  async l2NetworksOf(l3NetworkUuids: string[], db: Kysely<Database> = this.core.kysely) {
    if (l3NetworkUuids.length === 0) {
      return [];
    }

    const rows = await db
      .selectFrom("l3Networks")
      .select("l2NetworkUuid")
      .distinct()
      .where("uuid", "in", l3NetworkUuids)
      .execute();
    return rows.map((row) => row.l2NetworkUuid);
  }

  /** Clusters attached to every L2 network behind these L3 networks, for the host allocator. */
  async clustersReaching(l3NetworkUuids: string[], db: Kysely<Database> = this.core.kysely) {
    const l2s = await this.l2NetworksOf(l3NetworkUuids, db);

    if (l2s.length === 0) {
      return [];
    }

    const refs = await db
      .selectFrom("l2NetworkClusterRefs")
      .select(["l2NetworkUuid", "clusterUuid"])
      .where("l2NetworkUuid", "in", l2s)
      .execute();
    const clusters = new Set(refs.map((ref) => ref.clusterUuid));
    return [...clusters].filter((cluster) =>
      l2s.every((l2) =>
        refs.some((ref) => ref.l2NetworkUuid === l2 && ref.clusterUuid === cluster),
      ),
    );
  }

  private async nicsOf(vmUuid: string) {
    return this.core.kysely
      .selectFrom("vmNics")
      .selectAll()
      .where("vmInstanceUuid", "=", vmUuid)
      .orderBy("deviceId")
      .execute() as Promise<Row[]>;
  }

  private async networksOf(l3NetworkUuid: string) {
    const l3 = (await this.core.kysely
      .selectFrom("l3Networks")
      .selectAll()
      .where("uuid", "=", l3NetworkUuid)
      .executeTakeFirstOrThrow()) as Row;
    const l2 = (await this.core.kysely
      .selectFrom("l2Networks")
      .selectAll()
      .where("uuid", "=", String(l3.l2NetworkUuid))
      .executeTakeFirstOrThrow()) as Row;
    return { l3, l2 };
  }

  private async checkAttached(l2: Row, hostUuid: string) {
    const attached = await this.core.kysely
      .selectFrom("hosts")
      .innerJoin("l2NetworkClusterRefs", "l2NetworkClusterRefs.clusterUuid", "hosts.clusterUuid")
      .select("hosts.clusterUuid")
      .where("hosts.uuid", "=", hostUuid)
      .where("l2NetworkClusterRefs.l2NetworkUuid", "=", String(l2.uuid))
      .executeTakeFirst();

    if (!attached) {
      throw new ApiError(
        "invalidState",
        `L2 network ${String(l2.uuid)} is not attached to the cluster of host ${hostUuid}; attach it with attachL2NetworkToCluster first`,
      );
    }
  }

  private async servicesOf(l3NetworkUuid: string) {
    const refs = await this.core.kysely
      .selectFrom("l3NetworkServiceRefs")
      .select("networkServiceType")
      .where("l3NetworkUuid", "=", l3NetworkUuid)
      .execute();
    return new Set(refs.map((ref) => ref.networkServiceType));
  }

  /**
   * The L3 network's DHCP server address, the same on every host: taken once from its ranges, as
   * ZStack does, and kept until the range goes.
   */
  private dhcpServerIp(l3NetworkUuid: string) {
    return this.core.queues.run(`l3-dhcp-ip:${l3NetworkUuid}`, () =>
      this.core.transact(async (tx) => {
        const existing = await tx
          .selectFrom("usedIps")
          .select("ip")
          .where("l3NetworkUuid", "=", l3NetworkUuid)
          .where("usedFor", "=", "DHCP")
          .executeTakeFirst();

        if (existing) {
          return existing.ip;
        }

        return (await allocateIp(this.core, tx, l3NetworkUuid, { usedFor: "DHCP" })).ip;
      }),
    );
  }

  private async tagValue(vmUuid: string, key: string) {
    const row = await this.core.kysely
      .selectFrom("tags")
      .select("tag")
      .where("resourceUuid", "=", vmUuid)
      .where("tag", "like", `${key}::%`)
      .executeTakeFirst();
    return row?.tag.slice(key.length + 2);
  }

  /** The VM's `hostname::` tag, else its address with dashes, as ZStack names guests. */
  private async hostnameOf(vmUuid: string, ip: string) {
    return (await this.tagValue(vmUuid, "hostname")) ?? ip.replaceAll(".", "-");
  }

  /** The VM's `userdata::` tag, base64 as ZStack stores it, decoded for the metadata server. */
  private async userdataOf(vmUuid: string) {
    const value = await this.tagValue(vmUuid, "userdata");
    return value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8");
  }
}
