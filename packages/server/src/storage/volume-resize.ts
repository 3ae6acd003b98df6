import { ApiError } from "@tstack/api";
import { agentTarget } from "../compute/hosts/connect.js";
import type { Core } from "../core/core.js";
import { now } from "../core/ids.js";
import type { VolumeTable } from "../db/schema.js";
import { inventoryOf, loadResource } from "../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../rest/api.js";
import { agentReason, storageCall } from "./agent.js";
import { reservationFor, reserveCapacity, returnCapacity } from "./capacity.js";
import { volumeHost } from "./volume-service.js";

/** Resize queue keys decided in `check`: the volume's VM when it has one, else the volume. */
const queueKeys = new WeakMap<ApiCall, string>();

/** Checks a grow request and returns the volume's VM, whose state picks online or offline resize. */
async function checkResize(core: Core, volume: VolumeTable, type: "Root" | "Data", size: number) {
  const what = `cannot resize volume ${volume.uuid}`;

  if (volume.type !== type) {
    const api = volume.type === "Root" ? "resizeRootVolume" : "resizeDataVolume";
    throw new ApiError(
      "invalidArgument",
      `${what}: it is a ${volume.type} volume; use ${api} for it`,
    );
  }

  if (size <= Number(volume.size)) {
    throw new ApiError(
      "invalidArgument",
      `params.size: ${size} is not larger than the current ${volume.size} bytes of volume ${volume.uuid}; volumes only grow`,
    );
  }

  if (volume.status !== "Ready" && volume.status !== "NotInstantiated") {
    throw new ApiError(
      "invalidState",
      `${what}: its status is ${volume.status}, expected Ready or NotInstantiated`,
    );
  }

  if (!volume.vmInstanceUuid) {
    return undefined;
  }

  const vm = await core.kysely
    .selectFrom("vmInstances")
    .select(["uuid", "state", "hostUuid"])
    .where("uuid", "=", volume.vmInstanceUuid)
    .executeTakeFirstOrThrow();

  if (!["Running", "Stopped", "Created", "Destroyed"].includes(vm.state)) {
    throw new ApiError(
      "invalidState",
      `${what}: its VM ${vm.uuid} is ${vm.state}; resize while the VM is Running or Stopped`,
    );
  }

  return vm;
}

/** Returns the bytes a volume needs reserved, beyond its current reservation, to grow to `size`. */
function growthOf(core: Core, volume: VolumeTable, size: number) {
  return Math.max(0, reservationFor(core, size) - Number(volume.reservedCapacity));
}

function noRoom(volume: VolumeTable, extra: number, size: number) {
  return new ApiError(
    "invalidArgument",
    `params.size: primary storage ${volume.primaryStorageUuid} has not ${extra} more bytes free above primaryStorage.reservedCapacity to grow volume ${volume.uuid} to ${size} bytes`,
    "choose a smaller size or free capacity on the primary storage",
  );
}

/**
 * Rejects a growth the primary storage (or the host's share of local storage) has no room for,
 * before the job starts. The reservation itself happens later, atomically.
 */
async function checkRoom(core: Core, volume: VolumeTable, size: number) {
  if (!volume.primaryStorageUuid) {
    return;
  }

  const extra = growthOf(core, volume, size);
  const floor = core.config.number("primaryStorage", "reservedCapacity");
  const ps = await core.kysely
    .selectFrom("primaryStorages")
    .select("availableCapacity")
    .where("uuid", "=", volume.primaryStorageUuid)
    .executeTakeFirstOrThrow();
  const host = volume.hostUuid
    ? await core.kysely
        .selectFrom("localStorageHostRefs")
        .select("availableCapacity")
        .where("primaryStorageUuid", "=", volume.primaryStorageUuid)
        .where("hostUuid", "=", volume.hostUuid)
        .executeTakeFirst()
    : undefined;
  const available = Math.min(
    Number(ps.availableCapacity),
    host ? Number(host.availableCapacity) : Number.POSITIVE_INFINITY,
  );

  if (available - extra < floor) {
    throw noRoom(volume, extra, size);
  }
}

/**
 * Reserves the capacity a bigger volume needs beyond its current reservation, in one transaction with
 * the volume's new reservation, and returns the extra amount. Throws when the storage lacks room.
 */
async function reserveGrowth(core: Core, volume: VolumeTable, size: number) {
  const extra = growthOf(core, volume, size);

  await core.transact(async (tx) => {
    const taken = await reserveCapacity(
      core,
      tx,
      volume.primaryStorageUuid!,
      volume.hostUuid,
      extra,
    );

    // Throwing rolls back the transaction, with a storage-wide part taken before the host's
    // share ran short.
    if (!taken) {
      throw noRoom(volume, extra, size);
    }

    await tx
      .updateTable("volumes")
      .set({ reservedCapacity: Number(volume.reservedCapacity) + extra })
      .where("uuid", "=", volume.uuid)
      .execute();
  });

  return extra;
}

/** Grows the volume's file: `block_resize` through the agent while its VM runs, else qemu-img. */
async function growFile(core: Core, volume: VolumeTable, size: number, runningHost?: string) {
  if (runningHost) {
    const target = await agentTarget(core, runningHost);
    await core.agents.callAsync(
      target,
      "/vm/volume/resize",
      { vmUuid: volume.vmInstanceUuid, path: volume.installPath, size },
      { timeoutMs: 120_000 },
    );
    return;
  }

  const hostUuid = await volumeHost(core, volume);

  if (!hostUuid) {
    throw new Error(`no connected host reaches primary storage ${volume.primaryStorageUuid}`);
  }

  const ps = await core.kysely
    .selectFrom("primaryStorages")
    .select("url")
    .where("uuid", "=", volume.primaryStorageUuid!)
    .executeTakeFirstOrThrow();
  await storageCall(core, hostUuid, "/storage/volume/resize", {
    root: ps.url,
    volume: { type: volume.type, accountUuid: volume.accountUuid, volumeUuid: volume.uuid },
    topFileUuid: volume.topFileUuid,
    size,
  });
}

async function resize(core: Core, call: ApiCall, type: "Root" | "Data") {
  const size = Number(call.params.size);
  const volume = (await loadResource(
    core.kysely,
    "Volume",
    call.path.uuid!,
    call.caller,
  )) as unknown as VolumeTable;
  const vm = await checkResize(core, volume, type, size);

  // A volume without a file only records its new size; the file is made with it on first attach.
  if (volume.status === "NotInstantiated") {
    return recordSize(core, volume, size);
  }

  const extra = await reserveGrowth(core, volume, size);
  const runningHost = vm?.state === "Running" ? (vm.hostUuid ?? undefined) : undefined;

  try {
    await growFile(core, volume, size, runningHost);
  } catch (error) {
    await core.transact(async (tx) => {
      await returnCapacity(tx, volume.primaryStorageUuid!, volume.hostUuid, extra);
      await tx
        .updateTable("volumes")
        .set({ reservedCapacity: Number(volume.reservedCapacity) })
        .where("uuid", "=", volume.uuid)
        .execute();
    });
    throw new ApiError(
      "operationFailed",
      `failed to grow volume ${volume.uuid} to ${size} bytes ${runningHost ? `online on host ${runningHost}` : "offline"}: ${agentReason(error)}`,
      "check the volume's file and host, then retry",
    );
  }

  return recordSize(core, volume, size);
}

async function recordSize(core: Core, volume: VolumeTable, size: number) {
  await core.kysely
    .updateTable("volumes")
    .set({ size, lastOpDate: now(), version: volume.version + 1 })
    .where("uuid", "=", volume.uuid)
    .execute();
  return { inventory: await inventoryOf(core.kysely, "Volume", volume.uuid) };
}

function resizeHandler(type: "Root" | "Data"): ApiHandler {
  return {
    async check(core, call) {
      const volume = await loadResource(core.kysely, "Volume", call.path.uuid!, call.caller);
      const row = volume as unknown as VolumeTable;
      await checkResize(core, row, type, Number(call.params.size));
      await checkRoom(core, row, Number(call.params.size));
      queueKeys.set(call, String(volume.vmInstanceUuid ?? volume.uuid));
    },
    queueKey: (call) => queueKeys.get(call),
    run: (core, call) => resize(core, call, type),
  };
}

export function resizeHandlers(): ApiHandlers {
  return { resizeRootVolume: resizeHandler("Root"), resizeDataVolume: resizeHandler("Data") };
}
