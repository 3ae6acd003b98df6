import { agentTarget } from "../compute/hosts/connect.js";
import type { Core } from "../core/core.js";
import { now } from "../core/ids.js";

/**
 * Records a connected host's VTEP in every VXLAN pool its cluster uses, then sends each pool's
 * VTEP list to the hosts that have one of its VXLAN devices. A host added after its cluster
 * got the pool thus joins the head-end replication of the hosts already there. ZStack checks the
 * pools on connect too, but fails the connect when a check fails. Here the failure is logged and
 * the pool skipped, so VMs on that pool then fail to start on the host with the agent's error.
 */
export async function recordHostVteps(core: Core, hostUuid: string) {
  const host = await core.kysely
    .selectFrom("hosts")
    .select(["clusterUuid"])
    .where("uuid", "=", hostUuid)
    .executeTakeFirst();

  if (!host) {
    return;
  }

  const target = await agentTarget(core, hostUuid);

  for (const pool of await poolsOfCluster(core, host.clusterUuid)) {
    const reply = await core.agents
      .call<{ vtepIp?: string }>(target, "/network/l2/check", { vtepCidr: pool.vtepCidr })
      .catch((error: Error) => {
        core.log.warn(
          { err: error, hostUuid, poolUuid: pool.uuid },
          "checking the VTEP of a host in a VXLAN pool failed; fix the host's address in the VTEP CIDR, then reconnect it",
        );
        return {} as { vtepIp?: string };
      });

    const recorded = await core.kysely
      .selectFrom("vteps")
      .select("vtepIp")
      .where("poolUuid", "=", pool.uuid)
      .where("hostUuid", "=", hostUuid)
      .executeTakeFirst();

    // A reconnect with an unchanged VTEP leaves the peers as they are.
    if (!reply.vtepIp || reply.vtepIp === recorded?.vtepIp) {
      continue;
    }

    await core.kysely
      .insertInto("vteps")
      .values({
        poolUuid: pool.uuid,
        hostUuid,
        clusterUuid: host.clusterUuid,
        vtepIp: reply.vtepIp,
        createDate: now(),
      })
      .onConflict((conflict) =>
        conflict.columns(["poolUuid", "hostUuid"]).doUpdateSet({ vtepIp: reply.vtepIp! }),
      )
      .execute();
    await pushVxlanPeers(core, pool.uuid, String(pool.vtepCidr));
  }
}

/** VXLAN pools attached to a cluster, or with one of their VXLAN networks attached to it. */
async function poolsOfCluster(core: Core, clusterUuid: string) {
  const attached = await core.kysely
    .selectFrom("l2Networks")
    .innerJoin("l2NetworkClusterRefs", "l2NetworkClusterRefs.l2NetworkUuid", "l2Networks.uuid")
    .select(["l2Networks.uuid", "l2Networks.type", "l2Networks.poolUuid"])
    .where("l2NetworkClusterRefs.clusterUuid", "=", clusterUuid)
    .where("l2Networks.type", "in", ["VxlanNetworkPool", "VxlanNetwork"])
    .execute();
  const poolUuids = new Set(
    attached.map((l2) => (l2.type === "VxlanNetworkPool" ? l2.uuid : String(l2.poolUuid))),
  );

  if (poolUuids.size === 0) {
    return [];
  }

  return core.kysely
    .selectFrom("l2Networks")
    .select(["uuid", "vtepCidr"])
    .where("uuid", "in", [...poolUuids])
    .orderBy("uuid")
    .execute();
}

/** Deletes a deleted host's VTEPs and takes them out of the other hosts' replication lists. */
export async function forgetHostVteps(core: Core, hostUuid: string) {
  const pools = await core.kysely
    .selectFrom("vteps")
    .innerJoin("l2Networks", "l2Networks.uuid", "vteps.poolUuid")
    .select(["l2Networks.uuid", "l2Networks.vtepCidr"])
    .where("vteps.hostUuid", "=", hostUuid)
    .execute();
  await core.kysely.deleteFrom("vteps").where("hostUuid", "=", hostUuid).execute();

  for (const pool of pools) {
    await pushVxlanPeers(core, pool.uuid, String(pool.vtepCidr));
  }
}

/**
 * Sends the pool's VTEPs to every host where a NIC on one of the pool's VXLAN networks is
 * prepared, for each VNI it uses there. The agent drops its own VTEP from the list. A host that
 * fails is logged and gets the list again with its next VM start or the next VTEP change.
 */
export async function pushVxlanPeers(core: Core, poolUuid: string, vtepCidr: string) {
  const vteps = await core.kysely
    .selectFrom("vteps")
    .select("vtepIp")
    .where("poolUuid", "=", poolUuid)
    .orderBy("vtepIp")
    .execute();
  const uses = await core.kysely
    .selectFrom("vmNicHostRefs")
    .innerJoin("l2Networks", "l2Networks.uuid", "vmNicHostRefs.l2NetworkUuid")
    .select(["vmNicHostRefs.hostUuid", "l2Networks.vni"])
    .distinct()
    .where("l2Networks.poolUuid", "=", poolUuid)
    .execute();
  const peerVteps = vteps.map((vtep) => vtep.vtepIp);

  for (const use of uses) {
    try {
      await core.agents.call(await agentTarget(core, use.hostUuid), "/network/vxlan/peers/sync", {
        vni: Number(use.vni),
        vtepCidr,
        peerVteps,
      });
    } catch (error) {
      core.log.warn(
        { err: error, hostUuid: use.hostUuid, poolUuid, vni: use.vni },
        "updating the VXLAN peers of a host failed",
      );
    }
  }
}
