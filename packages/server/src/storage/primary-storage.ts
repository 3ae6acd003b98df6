import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";
import { emitEvent } from "../core/events.js";
import { newUuid, now } from "../core/ids.js";
import {
  changeStateHandler,
  deleteMode,
  deleteResourceRow,
  insertResource,
  inventoryOf,
  loadResource,
  queryHandler,
  updateHandler,
} from "../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../rest/api.js";
import { agentReason, storageCall } from "./agent.js";
import { type PhysicalCapacity, recordCapacity, sumLocalStorage } from "./capacity.js";
import { checkStorageDirectory, queryList } from "./checks.js";
import { collectImageCacheGarbage } from "./image-cache-gc.js";

const PRIMARY_STORAGE_STATES: Record<string, Record<string, string>> = {
  Enabled: { enable: "Enabled", disable: "Disabled", maintain: "Maintenance" },
  Disabled: { enable: "Enabled", disable: "Disabled", maintain: "Maintenance" },
  Maintenance: { enable: "Enabled", maintain: "Maintenance" },
};

type PrimaryStorageRow = { uuid: string; type: string; url: string; accountUuid: string };

async function clusterHosts(core: Core, clusterUuids: string[]) {
  if (clusterUuids.length === 0) {
    return [];
  }

  return core.kysely
    .selectFrom("hosts")
    .select(["uuid", "status", "managementIp"])
    .where("clusterUuid", "in", clusterUuids)
    .execute();
}

async function attachedClusters(core: Core, primaryStorageUuid: string) {
  const refs = await core.kysely
    .selectFrom("primaryStorageClusterRefs")
    .select("clusterUuid")
    .where("primaryStorageUuid", "=", primaryStorageUuid)
    .execute();
  return refs.map((ref) => ref.clusterUuid);
}

/** Initializes the directory on each host and records its capacity; local storage per host. */
async function connectOnHosts(core: Core, ps: PrimaryStorageRow, hostUuids: string[]) {
  const measured: { hostUuid: string; capacity: PhysicalCapacity }[] = [];

  for (const hostUuid of hostUuids) {
    try {
      const capacity = await storageCall<PhysicalCapacity>(
        core,
        hostUuid,
        "/storage/primary/init",
        {
          root: ps.url,
        },
      );
      measured.push({ hostUuid, capacity });
    } catch (error) {
      throw new ApiError(
        "operationFailed",
        `failed to prepare primary storage ${ps.uuid} at ${ps.url} on host ${hostUuid}: ${agentReason(error)}`,
        "check the directory on that host (it must be writable by the agent), then retry",
      );
    }
  }

  if (ps.type === "SharedMountPoint") {
    await proveSharedMount(core, ps, hostUuids);
  }

  await core.transact(async (tx) => {
    if (ps.type === "LocalStorage") {
      for (const { hostUuid, capacity } of measured) {
        await tx
          .insertInto("localStorageHostRefs")
          .values({
            primaryStorageUuid: ps.uuid,
            hostUuid,
            totalCapacity: 0,
            availableCapacity: 0,
            totalPhysicalCapacity: 0,
            availablePhysicalCapacity: 0,
          })
          .onConflict((conflict) =>
            conflict.columns(["primaryStorageUuid", "hostUuid"]).doNothing(),
          )
          .execute();
        await recordCapacity(tx, ps.uuid, hostUuid, capacity);
      }

      await sumLocalStorage(tx, ps.uuid);
    } else if (measured[0]) {
      await recordCapacity(tx, ps.uuid, null, measured[0].capacity);
    }
  });
}

/**
 * Shows that every host sees one filesystem at the mount path: the first host writes a random
 * token, every other host must read the same token back.
 */
async function proveSharedMount(core: Core, ps: PrimaryStorageRow, hostUuids: string[]) {
  const [first, ...others] = hostUuids;

  if (!first || others.length === 0) {
    return;
  }

  const markerUuid = newUuid();
  const { token } = await storageCall<{ token: string }>(core, first, "/storage/smp/marker/write", {
    root: ps.url,
    markerUuid,
  });

  try {
    for (const hostUuid of others) {
      const { verified } = await storageCall<{ verified: boolean }>(
        core,
        hostUuid,
        "/storage/smp/marker/verify",
        { root: ps.url, markerUuid, token },
      );

      if (!verified) {
        throw new ApiError(
          "operationFailed",
          `${ps.url} on host ${hostUuid} is not the filesystem mounted there on host ${first}: a marker written on ${first} did not appear`,
          "mount the same shared filesystem at this path on every host of the cluster",
        );
      }
    }
  } finally {
    await storageCall(core, first, "/storage/smp/marker/remove", {
      root: ps.url,
      markerUuid,
    }).catch((error) =>
      core.log.warn({ err: error, markerUuid }, "failed to remove an SMP marker"),
    );
  }
}

async function loadPrimaryStorage(core: Core, uuid: string) {
  return core.kysely
    .selectFrom("primaryStorages")
    .selectAll()
    .where("uuid", "=", uuid)
    .executeTakeFirstOrThrow();
}

async function setStatus(core: Core, uuid: string, status: string, lastError: string | null) {
  await core.transact(async (tx) => {
    const row = await tx
      .selectFrom("primaryStorages")
      .select(["status", "accountUuid"])
      .where("uuid", "=", uuid)
      .executeTakeFirst();

    if (!row) {
      return;
    }

    await tx
      .updateTable("primaryStorages")
      .set({ status, lastError, lastOpDate: now() })
      .where("uuid", "=", uuid)
      .execute();

    if (row.status !== status) {
      await emitEvent(tx, "/primaryStorage/status/change", {
        resourceUuid: uuid,
        accountUuid: row.accountUuid,
        content: { primaryStorageUuid: uuid, oldStatus: row.status, newStatus: status },
      });
    }
  });
}

/**
 * Prepares the primary storage of a host's cluster on a host that connects, so a host that
 * joins after the attach can hold volumes. A shared mount point is proved against a host that
 * already uses it. A failure is logged and leaves the host without that storage.
 */
export async function prepareOnConnectedHost(core: Core, hostUuid: string) {
  const host = await core.kysely
    .selectFrom("hosts")
    .select("clusterUuid")
    .where("uuid", "=", hostUuid)
    .executeTakeFirst();

  if (!host) {
    return;
  }

  const storages = await core.kysely
    .selectFrom("primaryStorages")
    .innerJoin(
      "primaryStorageClusterRefs",
      "primaryStorageClusterRefs.primaryStorageUuid",
      "primaryStorages.uuid",
    )
    .selectAll("primaryStorages")
    .where("primaryStorageClusterRefs.clusterUuid", "=", host.clusterUuid)
    .where("primaryStorages.type", "in", ["LocalStorage", "SharedMountPoint"])
    .execute();

  for (const ps of storages) {
    try {
      await connectOnHosts(core, ps, [hostUuid]);

      if (ps.type === "SharedMountPoint") {
        const hosts = await clusterHosts(core, await attachedClusters(core, ps.uuid));
        const peer = hosts.find((other) => other.uuid !== hostUuid && other.status === "Connected");
        await proveSharedMount(core, ps, peer ? [peer.uuid, hostUuid] : []);
      }
    } catch (error) {
      core.log.warn(
        { err: error, hostUuid, primaryStorageUuid: ps.uuid },
        "failed to prepare primary storage on a connected host",
      );
    }
  }
}

/** Reconnects a primary storage on the connected hosts of its clusters and syncs its capacity. */
export async function reconnectPrimaryStorage(core: Core, uuid: string) {
  const ps = await loadPrimaryStorage(core, uuid);
  const hosts = await clusterHosts(core, await attachedClusters(core, uuid));
  const connected = hosts.filter((host) => host.status === "Connected").map((host) => host.uuid);
  await setStatus(core, uuid, "Connecting", null);

  try {
    await connectOnHosts(core, ps, connected);
  } catch (error) {
    await setStatus(core, uuid, "Disconnected", agentReason(error));
    throw error;
  }

  await setStatus(core, uuid, "Connected", null);
}

function addPrimaryStorage(type: "LocalStorage" | "SharedMountPoint"): ApiHandler {
  return {
    async check(core, call) {
      checkStorageDirectory("params.url", call.params.url);
      await loadResource(core.kysely, "Zone", String(call.params.zoneUuid), call.caller).catch(
        () => {
          throw new ApiError(
            "invalidArgument",
            `params.zoneUuid: zone ${String(call.params.zoneUuid)} was not found`,
          );
        },
      );
    },
    run: (core, call) =>
      call.commit(async (tx) => {
        const row = await insertResource(
          tx,
          core,
          "PrimaryStorage",
          {
            name: call.params.name,
            description: call.params.description ?? null,
            type,
            url: call.params.url,
            zoneUuid: call.params.zoneUuid,
            state: "Enabled",
            status: "Connected",
            totalCapacity: 0,
            availableCapacity: 0,
            totalPhysicalCapacity: 0,
            availablePhysicalCapacity: 0,
            lastError: null,
          },
          call,
        );
        return { inventory: await inventoryOf(tx, "PrimaryStorage", String(row.uuid)) };
      }),
  };
}

async function attachToCluster(core: Core, call: ApiCall) {
  const clusterUuid = call.path.clusterUuid!;
  const primaryStorageUuid = call.path.primaryStorageUuid!;
  const ps = await loadPrimaryStorage(core, primaryStorageUuid);
  const hosts = await clusterHosts(core, [clusterUuid]);
  const connected = hosts.filter((host) => host.status === "Connected").map((host) => host.uuid);

  await connectOnHosts(core, ps, connected);

  if (ps.type === "SharedMountPoint") {
    // Hosts of other clusters must see the same filesystem as this one's.
    const others = await clusterHosts(core, await attachedClusters(core, ps.uuid));
    const first = others.find((host) => host.status === "Connected");

    if (first && connected[0]) {
      await proveSharedMount(core, ps, [first.uuid, connected[0]]);
    }
  }

  return call.commit(async (tx) => {
    await tx
      .insertInto("primaryStorageClusterRefs")
      .values({ primaryStorageUuid, clusterUuid, createDate: now() })
      .onConflict((conflict) => conflict.columns(["primaryStorageUuid", "clusterUuid"]).doNothing())
      .execute();
    return { inventory: await inventoryOf(tx, "PrimaryStorage", primaryStorageUuid) };
  });
}

async function detachFromCluster(core: Core, call: ApiCall) {
  const clusterUuid = call.path.clusterUuid!;
  const primaryStorageUuid = call.path.primaryStorageUuid!;
  const ps = await loadPrimaryStorage(core, primaryStorageUuid);
  const hostUuids = (await clusterHosts(core, [clusterUuid])).map((host) => host.uuid);

  return call.commit(async (tx) => {
    let volumes = tx
      .selectFrom("volumes")
      .select("uuid")
      .where("primaryStorageUuid", "=", primaryStorageUuid);

    if (ps.type === "LocalStorage") {
      volumes = volumes.where("hostUuid", "in", hostUuids.length > 0 ? hostUuids : [""]);
    }

    const volume = await volumes.executeTakeFirst();

    if (volume) {
      throw new ApiError(
        "invalidState",
        `primary storage ${primaryStorageUuid} still holds volume ${volume.uuid} for cluster ${clusterUuid}; delete or expunge its volumes first`,
      );
    }

    await tx
      .deleteFrom("primaryStorageClusterRefs")
      .where("primaryStorageUuid", "=", primaryStorageUuid)
      .where("clusterUuid", "=", clusterUuid)
      .execute();

    if (ps.type === "LocalStorage" && hostUuids.length > 0) {
      await tx
        .deleteFrom("localStorageHostRefs")
        .where("primaryStorageUuid", "=", primaryStorageUuid)
        .where("hostUuid", "in", hostUuids)
        .execute();
      await sumLocalStorage(tx, primaryStorageUuid);
    }

    return { inventory: await inventoryOf(tx, "PrimaryStorage", primaryStorageUuid) };
  });
}

async function checkClusterAndStorage(core: Core, call: ApiCall) {
  await loadResource(core.kysely, "Cluster", call.path.clusterUuid!, call.caller);
  await loadResource(core.kysely, "PrimaryStorage", call.path.primaryStorageUuid!, call.caller);
}

function syncHandler(): ApiHandler {
  return {
    check: async (core, call) =>
      void (await loadResource(core.kysely, "PrimaryStorage", call.path.uuid!, call.caller)),
    async run(core, call) {
      await reconnectPrimaryStorage(core, call.path.uuid!);
      return { inventory: await inventoryOf(core.kysely, "PrimaryStorage", call.path.uuid!) };
    },
  };
}

export function primaryStorageHandlers(): ApiHandlers {
  return {
    addLocalPrimaryStorage: addPrimaryStorage("LocalStorage"),
    addSharedMountPointPrimaryStorage: addPrimaryStorage("SharedMountPoint"),
    queryPrimaryStorage: queryHandler("PrimaryStorage"),
    updatePrimaryStorage: updateHandler("PrimaryStorage"),
    changePrimaryStorageState: changeStateHandler("PrimaryStorage", PRIMARY_STORAGE_STATES),
    reconnectPrimaryStorage: syncHandler(),
    syncPrimaryStorageCapacity: syncHandler(),
    cleanUpImageCacheOnPrimaryStorage: {
      check: async (core, call) =>
        void (await loadResource(core.kysely, "PrimaryStorage", call.path.uuid!, call.caller)),
      async run(core, call) {
        await collectImageCacheGarbage(core, call.path.uuid!);
        return { inventory: await inventoryOf(core.kysely, "PrimaryStorage", call.path.uuid!) };
      },
    },
    attachPrimaryStorageToCluster: {
      check: checkClusterAndStorage,
      queueKey: (call) => call.path.primaryStorageUuid,
      run: attachToCluster,
    },
    detachPrimaryStorageFromCluster: {
      check: checkClusterAndStorage,
      queueKey: (call) => call.path.primaryStorageUuid,
      run: detachFromCluster,
    },
    deletePrimaryStorage: {
      async check(core, call) {
        deleteMode(call);
        await loadResource(core.kysely, "PrimaryStorage", call.path.uuid!, call.caller);
        const cluster = (await attachedClusters(core, call.path.uuid!))[0];

        if (cluster) {
          throw new ApiError(
            "invalidState",
            `primary storage ${call.path.uuid} is attached to cluster ${cluster}; detach it first`,
          );
        }
      },
      run: (_core, call) =>
        call.commit(async (tx) => {
          const row = await loadResource(tx, "PrimaryStorage", call.path.uuid!, call.caller);
          await tx
            .deleteFrom("imageCaches")
            .where("primaryStorageUuid", "=", call.path.uuid!)
            .execute();
          await deleteResourceRow(tx, "PrimaryStorage", row);
          return {};
        }),
    },
    getPrimaryStorageCapacity: {
      async run(core, call) {
        let query = core.kysely.selectFrom("primaryStorages");
        const zones = queryList(call.query.zoneUuids);
        const ids = queryList(call.query.primaryStorageUuids);
        const clusters = queryList(call.query.clusterUuids);

        if (zones.length > 0) {
          query = query.where("zoneUuid", "in", zones);
        }

        if (ids.length > 0) {
          query = query.where("uuid", "in", ids);
        }

        if (clusters.length > 0) {
          query = query.where("uuid", "in", (eb) =>
            eb
              .selectFrom("primaryStorageClusterRefs")
              .select("primaryStorageUuid")
              .where("clusterUuid", "in", clusters),
          );
        }

        const row = await query
          .select((eb) => [
            eb.fn.coalesce(eb.fn.sum<number>("totalCapacity"), eb.lit(0)).as("total"),
            eb.fn.coalesce(eb.fn.sum<number>("availableCapacity"), eb.lit(0)).as("available"),
            eb.fn.coalesce(eb.fn.sum<number>("totalPhysicalCapacity"), eb.lit(0)).as("physical"),
            eb.fn
              .coalesce(eb.fn.sum<number>("availablePhysicalCapacity"), eb.lit(0))
              .as("availablePhysical"),
          ])
          .executeTakeFirstOrThrow();
        return {
          totalCapacity: Number(row.total),
          availableCapacity: Number(row.available),
          totalPhysicalCapacity: Number(row.physical),
          availablePhysicalCapacity: Number(row.availablePhysical),
        };
      },
    },
    getLocalStorageHostDiskCapacity: {
      async run(core, call) {
        const rows = await core.kysely
          .selectFrom("localStorageHostRefs")
          .selectAll()
          .where("primaryStorageUuid", "=", call.path.primaryStorageUuid!)
          .execute();
        return {
          inventories: rows.map((row) => ({
            hostUuid: row.hostUuid,
            totalCapacity: Number(row.totalCapacity),
            availableCapacity: Number(row.availableCapacity),
            totalPhysicalCapacity: Number(row.totalPhysicalCapacity),
            availablePhysicalCapacity: Number(row.availablePhysicalCapacity),
          })),
        };
      },
    },
    queryImageCache: queryHandler("ImageCache"),
  };
}
