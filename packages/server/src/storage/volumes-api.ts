import { ApiError } from "@tstack/api";
import type { Transaction } from "kysely";
import type { Core } from "../core/core.js";
import { newUuid } from "../core/ids.js";
import type { Database } from "../db/schema.js";
import {
  changeStateHandler,
  deleteMode,
  deleteResourceRow,
  insertResource,
  inventoryOf,
  loadResource,
  queryHandler,
  updateHandler,
  updateResource,
} from "../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../rest/api.js";
import { agentReason, storageCall } from "./agent.js";
import { reservationFor, reserveCapacity, returnCapacity } from "./capacity.js";
import { expungeVolume, volumeHost } from "./volume-service.js";

interface VolumeFileInfo {
  fileUuid: string;
  path: string;
  virtualSize: number;
  actualSize: number;
}

type Row = Record<string, unknown>;

/**
 * Data volume status events: each maps the statuses it may start from to the next status.
 * Recover goes back to Ready only when the volume has a file; expunge removes the row.
 */
const DATA_VOLUME_EVENTS: Record<string, Record<string, string>> = {
  delete: { Ready: "Deleted", NotInstantiated: "Deleted" },
  recover: { Deleted: "Ready|NotInstantiated" },
  expunge: { Deleted: "Expunged" },
};

/** Checks that a data volume may take `event` and returns the next status. */
export function nextDataVolumeStatus(volume: Row, event: string) {
  const what = `${event} volume ${String(volume.uuid)}`;

  if (volume.type !== "Data") {
    throw new ApiError(
      "invalidArgument",
      `cannot ${what}: it is a ${String(volume.type)} volume; root volumes go with their VM (destroyVmInstance)`,
    );
  }

  const next = DATA_VOLUME_EVENTS[event]?.[String(volume.status)];

  if (!next) {
    const from = Object.keys(DATA_VOLUME_EVENTS[event] ?? {}).join(" or ");
    throw new ApiError(
      "invalidState",
      `cannot ${what}: its status is ${String(volume.status)}, expected ${from}`,
    );
  }

  if (next === "Ready|NotInstantiated") {
    return volume.installPath ? "Ready" : "NotInstantiated";
  }

  return next;
}

/** Reads the size of a new data volume from its disk offering or its `diskSize`. */
async function requestedSize(core: Core, call: ApiCall) {
  const { diskOfferingUuid, diskSize } = call.params;

  if ((diskOfferingUuid === undefined) === (diskSize === undefined)) {
    throw new ApiError(
      "invalidArgument",
      "params.diskOfferingUuid, params.diskSize: give exactly one of them",
    );
  }

  if (diskSize !== undefined) {
    return Number(diskSize);
  }

  const offering = await core.kysely
    .selectFrom("diskOfferings")
    .select(["diskSize", "state"])
    .where("uuid", "=", String(diskOfferingUuid))
    .executeTakeFirst();

  if (offering?.state !== "Enabled") {
    throw new ApiError(
      "invalidArgument",
      `params.diskOfferingUuid: disk offering ${String(diskOfferingUuid)} is ${offering ? offering.state : "not found"}; give an Enabled one from queryDiskOffering`,
    );
  }

  return Number(offering.diskSize);
}

/** Loads the primary storage a data volume is created on; it must take new volumes. */
async function usableStorage(core: Core, primaryStorageUuid: string) {
  const ps = await core.kysely
    .selectFrom("primaryStorages")
    .select(["uuid", "type", "url", "state", "status"])
    .where("uuid", "=", primaryStorageUuid)
    .executeTakeFirst();

  if (!ps) {
    throw new ApiError(
      "invalidArgument",
      `params.primaryStorageUuid: primary storage ${primaryStorageUuid} was not found`,
    );
  }

  if (ps.state !== "Enabled" || ps.status !== "Connected") {
    throw new ApiError(
      "invalidState",
      `primary storage ${primaryStorageUuid} is ${ps.state} and ${ps.status}; new volumes need an Enabled, Connected one`,
    );
  }

  return ps;
}

/** Connected hosts of the clusters a primary storage is attached to. */
async function storageHosts(tx: Transaction<Database>, primaryStorageUuid: string) {
  const hosts = await tx
    .selectFrom("hosts")
    .innerJoin(
      "primaryStorageClusterRefs",
      "primaryStorageClusterRefs.clusterUuid",
      "hosts.clusterUuid",
    )
    .select("hosts.uuid")
    .where("primaryStorageClusterRefs.primaryStorageUuid", "=", primaryStorageUuid)
    .where("hosts.status", "=", "Connected")
    .execute();
  return hosts.map((host) => host.uuid);
}

/**
 * Reserves a new volume's capacity on the primary storage: on local storage on the first
 * connected host with room, whose share then stores the file. Returns the host, null on shared
 * storage, or throws when no host or no room is left.
 */
async function reserveForVolume(
  core: Core,
  tx: Transaction<Database>,
  ps: { uuid: string; type: string },
  amount: number,
) {
  const hosts = await storageHosts(tx, ps.uuid);

  if (hosts.length === 0) {
    throw new ApiError(
      "operationFailed",
      `primary storage ${ps.uuid} has no connected host in its clusters to create the volume on`,
      "attach the storage to a cluster with a connected host, or reconnect a host",
    );
  }

  if (ps.type !== "LocalStorage") {
    if (await reserveCapacity(core, tx, ps.uuid, null, amount)) {
      return null;
    }
  } else {
    for (const hostUuid of hosts) {
      if (await reserveCapacity(core, tx, ps.uuid, hostUuid, amount)) {
        return hostUuid;
      }

      // The storage-wide part was taken before the host's share ran short; give it back.
      await returnCapacity(tx, ps.uuid, null, amount);
    }
  }

  throw new ApiError(
    "operationFailed",
    `primary storage ${ps.uuid} has not ${amount} bytes free above primaryStorage.reservedCapacity`,
    "choose a smaller size or another primary storage, or free capacity",
  );
}

async function createDataVolume(core: Core, call: ApiCall) {
  const size = await requestedSize(core, call);
  const uuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
  const withUuid = { ...call, params: { ...call.params, resourceUuid: uuid } };
  const row = {
    name: call.params.name,
    description: call.params.description ?? null,
    type: "Data",
    vmInstanceUuid: null,
    rootImageUuid: null,
    diskOfferingUuid: call.params.diskOfferingUuid ?? null,
    format: "qcow2",
    size,
    actualSize: 0,
    deviceId: null,
    state: "Enabled",
    installPath: null,
    topFileUuid: null,
    lastError: null,
  };

  if (call.params.primaryStorageUuid === undefined) {
    return call.commit(async (tx) => {
      await insertResource(
        tx,
        core,
        "Volume",
        {
          ...row,
          primaryStorageUuid: null,
          hostUuid: null,
          reservedCapacity: 0,
          status: "NotInstantiated",
        },
        withUuid,
      );
      return { inventory: await inventoryOf(tx, "Volume", uuid) };
    });
  }

  const ps = await usableStorage(core, String(call.params.primaryStorageUuid));
  const amount = reservationFor(core, size);
  const hostUuid = await core.transact(async (tx) => {
    const host = await reserveForVolume(core, tx, ps, amount);
    await insertResource(
      tx,
      core,
      "Volume",
      {
        ...row,
        primaryStorageUuid: ps.uuid,
        hostUuid: host,
        reservedCapacity: amount,
        status: "Creating",
      },
      withUuid,
    );
    return host;
  });

  const file = await createFile(core, { uuid, accountUuid: call.caller.accountUuid, size }, ps, {
    hostUuid,
    amount,
  });

  return call.commit(async (tx) => {
    const created = await loadResource(tx, "Volume", uuid, call.caller);
    return {
      inventory: await updateResource(tx, "Volume", created, {
        status: "Ready",
        installPath: file.path,
        topFileUuid: file.fileUuid,
        actualSize: file.actualSize,
      }),
    };
  });
}

/**
 * Removes the data volumes a crash left in Creating: the request that creates one runs outside
 * a workflow, so after a restart nothing else would finish it. Their file on the host (if made),
 * their capacity and their row go, as a failed create leaves them.
 */
export async function removeUnfinishedDataVolumes(core: Core) {
  const unfinished = await core.kysely
    .selectFrom("volumes")
    .selectAll()
    .where("status", "=", "Creating")
    .where("type", "=", "Data")
    .where("vmInstanceUuid", "is", null)
    .execute();

  for (const volume of unfinished) {
    try {
      await expungeVolume(core, volume);
      core.log.info({ volumeUuid: volume.uuid }, "removed a data volume a restart left Creating");
    } catch (error) {
      core.log.error(
        { err: error, volumeUuid: volume.uuid },
        "failed to remove a data volume a restart left Creating",
      );
    }
  }
}

/** Makes the data volume's qcow2 file; on failure gives back the capacity and drops the row. */
async function createFile(
  core: Core,
  volume: { uuid: string; accountUuid: string; size: number },
  ps: { uuid: string; url: string },
  reserved: { hostUuid: string | null; amount: number },
) {
  const agentHost = await volumeHost(core, {
    primaryStorageUuid: ps.uuid,
    hostUuid: reserved.hostUuid,
  });

  try {
    if (!agentHost) {
      throw new Error(`no connected host reaches primary storage ${ps.uuid}`);
    }

    return await storageCall<VolumeFileInfo>(core, agentHost, "/storage/volume/data/create", {
      root: ps.url,
      accountUuid: volume.accountUuid,
      volumeUuid: volume.uuid,
      size: volume.size,
    });
  } catch (error) {
    await core.transact(async (tx) => {
      await returnCapacity(tx, ps.uuid, reserved.hostUuid, reserved.amount);
      const row = await tx
        .selectFrom("volumes")
        .selectAll()
        .where("uuid", "=", volume.uuid)
        .executeTakeFirst();

      if (row) {
        await deleteResourceRow(tx, "Volume", row);
      }
    });
    throw new ApiError(
      "operationFailed",
      `failed to create data volume ${volume.uuid} on primary storage ${ps.uuid} (host ${agentHost ?? "none"}): ${agentReason(error)}`,
      "check the primary storage directory on that host, then retry",
    );
  }
}

/** Builds the handler of a data volume status change that needs only the row. */
function statusHandler(event: "delete" | "recover"): ApiHandler {
  return {
    async check(core, call) {
      if (event === "delete") {
        deleteMode(call);
      }

      const volume = await loadResource(core.kysely, "Volume", call.path.uuid!, call.caller);
      nextDataVolumeStatus(volume, event);
    },
    run: (_core, call) =>
      call.commit(async (tx) => {
        const volume = await loadResource(tx, "Volume", call.path.uuid!, call.caller);

        if (volume.vmInstanceUuid) {
          throw new ApiError(
            "invalidState",
            `volume ${call.path.uuid} is attached to VM ${String(volume.vmInstanceUuid)}; detach it first`,
          );
        }

        const status = nextDataVolumeStatus(volume, event);
        const inventory = await updateResource(tx, "Volume", volume, { status });
        return event === "delete" ? {} : { inventory };
      }),
  };
}

const expungeDataVolume: ApiHandler = {
  async check(core, call) {
    const volume = await loadResource(core.kysely, "Volume", call.path.uuid!, call.caller);
    nextDataVolumeStatus(volume, "expunge");
  },
  async run(core, call) {
    const volume = await loadResource(core.kysely, "Volume", call.path.uuid!, call.caller);
    nextDataVolumeStatus(volume, "expunge");

    try {
      await expungeVolume(core, {
        uuid: String(volume.uuid),
        type: String(volume.type),
        accountUuid: String(volume.accountUuid),
        primaryStorageUuid: (volume.primaryStorageUuid as string | null) ?? null,
        hostUuid: (volume.hostUuid as string | null) ?? null,
        reservedCapacity: Number(volume.reservedCapacity),
      });
    } catch (error) {
      throw new ApiError(
        "operationFailed",
        `failed to expunge volume ${call.path.uuid}: ${agentReason(error)}`,
        "check the primary storage on the volume's host, then retry expungeDataVolume",
      );
    }

    return {};
  },
};

export function volumeHandlers(): ApiHandlers {
  return {
    createDataVolume: {
      async check(core, call) {
        await requestedSize(core, call);

        if (call.params.primaryStorageUuid !== undefined) {
          await usableStorage(core, String(call.params.primaryStorageUuid));
        }
      },
      run: createDataVolume,
    },
    updateVolume: updateHandler("Volume"),
    changeVolumeState: changeStateHandler("Volume"),
    deleteDataVolume: statusHandler("delete"),
    recoverDataVolume: statusHandler("recover"),
    expungeDataVolume,
    queryVolumeSnapshot: queryHandler("VolumeSnapshot"),
    updateVolumeSnapshot: updateHandler("VolumeSnapshot"),
  };
}
