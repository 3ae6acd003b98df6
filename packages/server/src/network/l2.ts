import { ApiError } from "@tstack/api";
import type { Transaction } from "kysely";
import { agentTarget } from "../compute/hosts/connect.js";
import type { Core } from "../core/core.js";
import { now } from "../core/ids.js";
import type { Database } from "../db/schema.js";
import {
  deleteMode,
  deleteResourceRow,
  insertResource,
  inventoryOf,
  loadResource,
  queryHandler,
  updateHandler,
} from "../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../rest/api.js";
import { invalid, referenced } from "./checks.js";

type Row = Record<string, unknown>;

function createL2(type: string, columns: (call: ApiCall) => Row, check?: ApiHandler["check"]) {
  return {
    async check(core, call) {
      await referenced(core.kysely, "zones", call.params.zoneUuid, "params.zoneUuid", "zone");
      await check?.(core, call);
    },
    run: (core, call) =>
      call.commit(async (tx) => {
        const row = await insertResource(
          tx,
          core,
          "L2Network",
          {
            name: call.params.name,
            description: call.params.description ?? null,
            zoneUuid: call.params.zoneUuid,
            type,
            physicalInterface: call.params.physicalInterface ?? null,
            vlan: null,
            vni: null,
            poolUuid: null,
            vtepCidr: null,
            ...columns(call),
          },
          call,
        );
        return { inventory: await inventoryOf(tx, "L2Network", String(row.uuid)) };
      }),
  } satisfies ApiHandler;
}

async function checkVlanFree(core: Core, call: ApiCall) {
  const taken = await core.kysely
    .selectFrom("l2Networks")
    .select("uuid")
    .where("zoneUuid", "=", String(call.params.zoneUuid))
    .where("type", "=", "L2VlanNetwork")
    .where("physicalInterface", "=", String(call.params.physicalInterface))
    .where("vlan", "=", Number(call.params.vlan))
    .executeTakeFirst();

  if (taken) {
    invalid(
      "params.vlan",
      `VLAN ${String(call.params.vlan)} on ${String(call.params.physicalInterface)} is already L2 network ${taken.uuid} in this zone; use that network or another VLAN id`,
    );
  }
}

async function loadPool(db: Core["kysely"] | Transaction<Database>, uuid: unknown, field: string) {
  const pool = await referenced(db, "l2Networks", uuid, field, "VXLAN pool");

  if (pool.type !== "VxlanNetworkPool") {
    invalid(field, `L2 network ${String(uuid)} is a ${String(pool.type)}, not a VXLAN pool`);
  }

  return pool;
}

/** Picks the VNI of a new VXLAN network: the requested one if free, else the lowest free one. */
async function chooseVni(tx: Transaction<Database>, poolUuid: string, requested?: number) {
  const ranges = await tx
    .selectFrom("vniRanges")
    .select(["startVni", "endVni"])
    .where("l2NetworkUuid", "=", poolUuid)
    .orderBy("startVni")
    .execute();
  const used = new Set(
    (
      await tx.selectFrom("l2Networks").select("vni").where("poolUuid", "=", poolUuid).execute()
    ).map((row) => Number(row.vni)),
  );

  if (requested !== undefined) {
    if (!ranges.some((range) => requested >= range.startVni && requested <= range.endVni)) {
      invalid(
        "params.vni",
        `VNI ${requested} is outside every VNI range of pool ${poolUuid}; add a range that holds it or pick one inside`,
      );
    }

    if (used.has(requested)) {
      invalid("params.vni", `VNI ${requested} is already used in pool ${poolUuid}; pick another`);
    }

    return requested;
  }

  for (const range of ranges) {
    for (let vni = Number(range.startVni); vni <= Number(range.endVni); vni++) {
      if (!used.has(vni)) {
        return vni;
      }
    }
  }

  throw new ApiError(
    "operationFailed",
    `VXLAN pool ${poolUuid} has no free VNI left in its ${ranges.length} range(s); add a VNI range to the pool`,
  );
}

/**
 * Attaches a new VXLAN network to every cluster its pool is attached to. As in ZStack, a pool's
 * VXLAN networks follow the pool's cluster attachments, so a VM can use a network created after
 * the pool was attached.
 */
async function inheritPoolClusters(tx: Transaction<Database>, poolUuid: string, l2Uuid: string) {
  const refs = await tx
    .selectFrom("l2NetworkClusterRefs")
    .select("clusterUuid")
    .where("l2NetworkUuid", "=", poolUuid)
    .execute();

  for (const ref of refs) {
    await tx
      .insertInto("l2NetworkClusterRefs")
      .values({ l2NetworkUuid: l2Uuid, clusterUuid: ref.clusterUuid, createDate: now() })
      .onConflict((conflict) => conflict.columns(["l2NetworkUuid", "clusterUuid"]).doNothing())
      .execute();
  }
}

/** The L2 network and, for a VXLAN pool, the VXLAN networks in it: what attaches together. */
async function attachedTogether(db: Core["kysely"] | Transaction<Database>, l2: Row) {
  if (l2.type !== "VxlanNetworkPool") {
    return [String(l2.uuid)];
  }

  const members = await db
    .selectFrom("l2Networks")
    .select("uuid")
    .where("poolUuid", "=", String(l2.uuid))
    .execute();
  return [String(l2.uuid), ...members.map((member) => member.uuid)];
}

const createVxlanNetwork: ApiHandler = {
  async check(core, call) {
    const pool = await loadPool(core.kysely, call.params.poolUuid, "params.poolUuid");
    await referenced(core.kysely, "zones", call.params.zoneUuid, "params.zoneUuid", "zone");

    if (pool.zoneUuid !== call.params.zoneUuid) {
      invalid("params.poolUuid", `pool ${String(pool.uuid)} is in zone ${String(pool.zoneUuid)}`);
    }
  },
  run: (core, call) =>
    call.commit(async (tx) => {
      const poolUuid = String(call.params.poolUuid);
      await loadPool(tx, poolUuid, "params.poolUuid");
      const vni = await chooseVni(tx, poolUuid, call.params.vni as number | undefined);
      const row = await insertResource(
        tx,
        core,
        "L2Network",
        {
          name: call.params.name,
          description: call.params.description ?? null,
          zoneUuid: call.params.zoneUuid,
          type: "VxlanNetwork",
          physicalInterface: null,
          vlan: null,
          vni,
          poolUuid,
          vtepCidr: null,
        },
        call,
      );
      await inheritPoolClusters(tx, poolUuid, String(row.uuid));
      return { inventory: await inventoryOf(tx, "L2Network", String(row.uuid)) };
    }),
  // VNIs of one pool are chosen one create at a time.
  queueKey: (call) => `vxlan-pool:${String(call.params.poolUuid)}`,
};

const createVniRange: ApiHandler = {
  async check(core, call) {
    const pool = await loadPool(core.kysely, call.path.l2NetworkUuid, "l2NetworkUuid");
    const start = Number(call.params.startVni);
    const end = Number(call.params.endVni);

    if (start > end) {
      invalid("params.endVni", `endVni ${end} is below startVni ${start}`);
    }

    const overlap = await core.kysely
      .selectFrom("vniRanges")
      .innerJoin("l2Networks", "l2Networks.uuid", "vniRanges.l2NetworkUuid")
      .select(["vniRanges.uuid", "vniRanges.startVni", "vniRanges.endVni"])
      .where("l2Networks.zoneUuid", "=", String(pool.zoneUuid))
      .where("vniRanges.startVni", "<=", end)
      .where("vniRanges.endVni", ">=", start)
      .executeTakeFirst();

    if (overlap) {
      invalid(
        "params.startVni",
        `VNIs ${start}-${end} overlap range ${overlap.uuid} (${overlap.startVni}-${overlap.endVni}) in this zone; pick VNIs outside it`,
      );
    }
  },
  run: (core, call) =>
    call.commit(async (tx) => {
      const row = await insertResource(
        tx,
        core,
        "VniRange",
        {
          name: call.params.name,
          description: call.params.description ?? null,
          l2NetworkUuid: call.path.l2NetworkUuid,
          startVni: call.params.startVni,
          endVni: call.params.endVni,
        },
        call,
      );
      return { inventory: await inventoryOf(tx, "VniRange", String(row.uuid)) };
    }),
  queueKey: (call) => `vxlan-pool:${call.path.l2NetworkUuid}`,
};

const deleteVniRange: ApiHandler = {
  async check(core, call) {
    deleteMode(call);
    await loadResource(core.kysely, "VniRange", call.path.uuid!, call.caller);
  },
  run: (_core, call) =>
    call.commit(async (tx) => {
      const range = await loadResource(tx, "VniRange", call.path.uuid!, call.caller);
      const user = await tx
        .selectFrom("l2Networks")
        .select(["uuid", "vni"])
        .where("poolUuid", "=", String(range.l2NetworkUuid))
        .where("vni", ">=", Number(range.startVni))
        .where("vni", "<=", Number(range.endVni))
        .executeTakeFirst();

      if (user) {
        throw new ApiError(
          "invalidState",
          `VNI range ${call.path.uuid} holds VNI ${user.vni} of VXLAN network ${user.uuid}; delete that network first`,
        );
      }

      await deleteResourceRow(tx, "VniRange", range);
      return {};
    }),
};

const deleteL2Network: ApiHandler = {
  async check(core, call) {
    deleteMode(call);
    await loadResource(core.kysely, "L2Network", call.path.uuid!, call.caller);
  },
  run: (_core, call) =>
    call.commit(async (tx) => {
      const l2 = await loadResource(tx, "L2Network", call.path.uuid!, call.caller);
      const l3 = await tx
        .selectFrom("l3Networks")
        .select("uuid")
        .where("l2NetworkUuid", "=", String(l2.uuid))
        .executeTakeFirst();

      if (l3) {
        throw new ApiError(
          "invalidState",
          `L2 network ${l2.uuid} carries L3 network ${l3.uuid}; delete its L3 networks first`,
        );
      }

      const member = await tx
        .selectFrom("l2Networks")
        .select("uuid")
        .where("poolUuid", "=", String(l2.uuid))
        .executeTakeFirst();

      if (member) {
        throw new ApiError(
          "invalidState",
          `VXLAN pool ${l2.uuid} holds VXLAN network ${member.uuid}; delete its VXLAN networks first`,
        );
      }

      await tx
        .deleteFrom("l2NetworkClusterRefs")
        .where("l2NetworkUuid", "=", String(l2.uuid))
        .execute();
      await tx.deleteFrom("vteps").where("poolUuid", "=", String(l2.uuid)).execute();

      for (const range of await tx
        .selectFrom("vniRanges")
        .selectAll()
        .where("l2NetworkUuid", "=", String(l2.uuid))
        .execute()) {
        await deleteResourceRow(tx, "VniRange", range);
      }

      await deleteResourceRow(tx, "L2Network", l2);
      return {};
    }),
};

/** What a host must have for an L2 network: its interface, or a VTEP address in the pool's CIDR. */
async function hostRequirement(core: Core, l2: Row) {
  if (l2.type === "VxlanNetwork") {
    const pool = await referenced(core.kysely, "l2Networks", l2.poolUuid, "poolUuid", "VXLAN pool");
    return { poolUuid: String(pool.uuid), check: { vtepCidr: String(pool.vtepCidr) } };
  }

  if (l2.type === "VxlanNetworkPool") {
    return { poolUuid: String(l2.uuid), check: { vtepCidr: String(l2.vtepCidr) } };
  }

  return {
    poolUuid: undefined,
    check: l2.physicalInterface ? { physicalInterface: String(l2.physicalInterface) } : {},
  };
}

const attachL2NetworkToCluster: ApiHandler = {
  async check(core, call) {
    const l2 = await referenced(
      core.kysely,
      "l2Networks",
      call.path.l2NetworkUuid,
      "l2NetworkUuid",
      "L2 network",
    );
    const cluster = await referenced(
      core.kysely,
      "clusters",
      call.path.clusterUuid,
      "clusterUuid",
      "cluster",
    );

    if (l2.zoneUuid !== cluster.zoneUuid) {
      invalid(
        "clusterUuid",
        `cluster ${String(cluster.uuid)} is in zone ${String(cluster.zoneUuid)} but L2 network ${String(l2.uuid)} is in zone ${String(l2.zoneUuid)}`,
      );
    }
  },
  async run(core, call) {
    const l2Uuid = call.path.l2NetworkUuid!;
    const clusterUuid = call.path.clusterUuid!;
    const l2 = await referenced(core.kysely, "l2Networks", l2Uuid, "l2NetworkUuid", "L2 network");
    const requirement = await hostRequirement(core, l2);
    const hosts = await core.kysely
      .selectFrom("hosts")
      .select(["uuid", "name"])
      .where("clusterUuid", "=", clusterUuid)
      .where("status", "=", "Connected")
      .execute();
    const vteps: { hostUuid: string; vtepIp: string }[] = [];

    for (const host of hosts) {
      await call.progress(0, `checking host ${host.uuid} for L2 network ${l2Uuid}`);
      const target = await agentTarget(core, host.uuid);
      const reply = await core.agents
        .call<{ vtepIp?: string }>(target, "/network/l2/check", requirement.check)
        .catch((error: Error) => {
          throw new ApiError(
            "operationFailed",
            `cannot attach L2 network ${l2Uuid} to cluster ${clusterUuid}: host ${host.uuid} (${host.name}) failed the check: ${error.message}`,
            "fix the host or attach the L2 network to another cluster",
          );
        });

      if (reply.vtepIp) {
        vteps.push({ hostUuid: host.uuid, vtepIp: reply.vtepIp });
      }
    }

    return call.commit(async (tx) => {
      const stamp = now();

      for (const l2NetworkUuid of await attachedTogether(tx, l2)) {
        await tx
          .insertInto("l2NetworkClusterRefs")
          .values({ l2NetworkUuid, clusterUuid, createDate: stamp })
          .onConflict((conflict) => conflict.columns(["l2NetworkUuid", "clusterUuid"]).doNothing())
          .execute();
      }

      for (const vtep of vteps) {
        await tx
          .insertInto("vteps")
          .values({ poolUuid: requirement.poolUuid!, clusterUuid, createDate: stamp, ...vtep })
          .onConflict((conflict) =>
            conflict.columns(["poolUuid", "hostUuid"]).doUpdateSet({ vtepIp: vtep.vtepIp }),
          )
          .execute();
      }

      return { inventory: await inventoryOf(tx, "L2Network", l2Uuid) };
    });
  },
  queueKey: (call) => call.path.l2NetworkUuid,
};

const detachL2NetworkFromCluster: ApiHandler = {
  async check(core, call) {
    await referenced(
      core.kysely,
      "l2Networks",
      call.path.l2NetworkUuid,
      "l2NetworkUuid",
      "L2 network",
    );
  },
  run: (_core, call) =>
    call.commit(async (tx) => {
      const l2Uuid = call.path.l2NetworkUuid!;
      const clusterUuid = call.path.clusterUuid!;
      const l2 = await referenced(tx, "l2Networks", l2Uuid, "l2NetworkUuid", "L2 network");
      const detached = await attachedTogether(tx, l2);
      const inUse = await tx
        .selectFrom("vmNicHostRefs")
        .innerJoin("hosts", "hosts.uuid", "vmNicHostRefs.hostUuid")
        .select(["vmNicHostRefs.nicUuid", "vmNicHostRefs.l2NetworkUuid", "hosts.uuid as hostUuid"])
        .where("vmNicHostRefs.l2NetworkUuid", "in", detached)
        .where("hosts.clusterUuid", "=", clusterUuid)
        .executeTakeFirst();

      if (inUse) {
        throw new ApiError(
          "invalidState",
          `VM NIC ${inUse.nicUuid} uses L2 network ${inUse.l2NetworkUuid} on host ${inUse.hostUuid} of cluster ${clusterUuid}; stop or migrate its VM first`,
        );
      }

      await tx
        .deleteFrom("l2NetworkClusterRefs")
        .where("l2NetworkUuid", "in", detached)
        .where("clusterUuid", "=", clusterUuid)
        .execute();
      await tx
        .deleteFrom("vteps")
        .where("poolUuid", "=", l2Uuid)
        .where("clusterUuid", "=", clusterUuid)
        .execute();
      return { inventory: await inventoryOf(tx, "L2Network", l2Uuid) };
    }),
  queueKey: (call) => call.path.l2NetworkUuid,
};

export const l2Handlers: ApiHandlers = {
  queryL2Network: queryHandler("L2Network"),
  updateL2Network: updateHandler("L2Network"),
  deleteL2Network,
  createL2NoVlanNetwork: createL2("L2NoVlanNetwork", () => ({})),
  createL2VlanNetwork: createL2(
    "L2VlanNetwork",
    (call) => ({ vlan: call.params.vlan }),
    checkVlanFree,
  ),
  createL2VxlanNetworkPool: createL2("VxlanNetworkPool", (call) => ({
    vtepCidr: call.params.vtepCidr,
  })),
  createL2VxlanNetwork: createVxlanNetwork,
  createVniRange,
  queryVniRange: queryHandler("VniRange"),
  deleteVniRange,
  attachL2NetworkToCluster,
  detachL2NetworkFromCluster,
};
