import { basename, dirname, join } from "node:path";
import { ApiError } from "@tstack/api";
import { agentTarget } from "../compute/hosts/connect.js";
import type { Core } from "../core/core.js";
import { newUuid } from "../core/ids.js";
import { AgentError } from "../drivers/agent-client.js";
import type { Caller } from "../identity/sessions.js";
import {
  deleteMode,
  deleteResourceRow,
  insertResource,
  inventoryOf,
  loadResource,
  updateResource,
} from "../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../rest/api.js";
import { storageCall, storageCallAsync, storageFailure } from "./agent.js";
import { reserveCapacity, returnCapacity } from "./capacity.js";
import {
  commitSnapshot,
  dropSnapshot,
  settleCreating,
  type TakenSnapshot,
  type VolumeFileInfo,
  type VolumeTarget,
  volumeTarget,
} from "./snapshot-files.js";
import { checkDeleteState, checkStopped, checkTakeState, type VolumeVm } from "./snapshot-state.js";

type Row = Record<string, unknown>;

/**
 * Runs `work` in the queue of the volume's VM, or of the volume itself when it has none, so a
 * snapshot never interleaves with the VM's start or with another snapshot of the volume. The
 * job's own queue is `outerKey`; entering it again would wait on itself.
 */
async function inVolumeQueue<T>(core: Core, volume: Row, outerKey: string, work: () => Promise<T>) {
  const key = String(volume.vmInstanceUuid ?? volume.uuid);
  return key === outerKey ? work() : core.queues.run(`resource:${key}`, work);
}

/** Returns the uuid of the qcow2 file a snapshot froze, from its install path. */
function snapshotFileUuid(snapshot: Row) {
  return basename(String(snapshot.primaryStorageInstallPath), ".qcow2");
}

/** Size of the volume's current top file, which the snapshot will freeze. */
async function topFileSize(core: Core, target: VolumeTarget) {
  const { files } = await storageCall<{ files: VolumeFileInfo[] }>(
    core,
    target.hostUuid,
    "/storage/volume/files",
    { root: target.root, volume: target.ref },
  );
  const top = files.find((file) => file.fileUuid === target.volume.topFileUuid);

  if (!top) {
    throw new ApiError(
      "operationFailed",
      `volume ${String(target.volume.uuid)} has no file ${String(target.volume.topFileUuid)} on host ${target.hostUuid}`,
      "check the primary storage directory on that host; the volume's file is missing",
    );
  }

  return top.actualSize;
}

/**
 * Records the snapshot row (Creating) and reserves its size. A snapshot contains bytes already
 * written, so its reservation is its actual size, without the over-provisioning ratio; it is
 * added to the volume's reservation so that expunging the volume returns it too. Until the
 * snapshot is Ready, its install path is the path of the new top file, so that recovery after a
 * crash can find out whether the agent made it.
 */
async function reserveSnapshot(
  core: Core,
  call: ApiCall,
  target: VolumeTarget,
  size: number,
  newTopPath: string,
) {
  const { volume } = target;
  const snapshotUuid = (call.params.resourceUuid as string | undefined) ?? newUuid();

  await core.transact(async (tx) => {
    const psUuid = String(volume.primaryStorageUuid);
    const hostUuid = (volume.hostUuid as string | null) ?? null;

    if (!(await reserveCapacity(core, tx, psUuid, hostUuid, size))) {
      throw new ApiError(
        "operationFailed",
        `primary storage ${psUuid} has not ${size} bytes free above primaryStorage.reservedCapacity for a snapshot of volume ${String(volume.uuid)}`,
        "free capacity on the primary storage, for example by deleting old snapshots",
      );
    }

    const latest = await tx
      .selectFrom("volumeSnapshots")
      .select("uuid")
      .where("volumeUuid", "=", String(volume.uuid))
      .where("latest", "=", 1)
      .executeTakeFirst();
    await insertResource(
      tx,
      core,
      "VolumeSnapshot",
      {
        name: call.params.name,
        description: call.params.description ?? null,
        accountUuid: volume.accountUuid,
        volumeUuid: volume.uuid,
        primaryStorageUuid: psUuid,
        parentUuid: latest?.uuid ?? null,
        volumeType: volume.type,
        primaryStorageInstallPath: newTopPath,
        size,
        state: "Enabled",
        status: "Creating",
        latest: 0,
      },
      { ...call, params: { ...call.params, resourceUuid: snapshotUuid } },
    );
    await tx
      .updateTable("volumes")
      .set({ reservedCapacity: Number(volume.reservedCapacity) + size })
      .where("uuid", "=", String(volume.uuid))
      .execute();
  });

  return snapshotUuid;
}

/** Asks the agent to take the snapshot: through QMP when the VM runs, else with qemu-img. */
async function takeOnHost(
  core: Core,
  target: VolumeTarget,
  vm: VolumeVm | undefined,
  newTopFileUuid: string,
) {
  const body = {
    root: target.root,
    volume: target.ref,
    topFileUuid: String(target.volume.topFileUuid),
    newTopFileUuid,
  };

  if (!vm) {
    return storageCall<TakenSnapshot>(core, target.hostUuid, "/storage/snapshot/take", body);
  }

  const agent = await agentTarget(core, vm.hostUuid!);
  return core.agents.callAsync<TakenSnapshot>(
    agent,
    "/vm/volume/snapshot",
    { ...body, vmUuid: vm.uuid },
    { timeoutMs: 120_000 },
  );
}

/**
 * Cleans up after a failed take and returns true when the snapshot was taken after all. An agent
 * that timed out or could not be reached may have taken it, so the volume's files decide.
 */
async function settleFailedTake(core: Core, snapshotUuid: string, error: unknown) {
  const row = await core.kysely
    .selectFrom("volumeSnapshots")
    .selectAll()
    .where("uuid", "=", snapshotUuid)
    .executeTakeFirstOrThrow();

  if (error instanceof AgentError && error.unreachable) {
    return (await settleCreating(core, row, error.message)) === "completed";
  }

  await dropSnapshot(core, row.volumeUuid, snapshotUuid);
  return false;
}

async function takeSnapshot(core: Core, call: ApiCall) {
  const volumeUuid = call.path.volumeUuid!;
  const found = await loadResource(core.kysely, "Volume", volumeUuid, call.caller);

  return inVolumeQueue(core, found, volumeUuid, async () => {
    const volume = await loadResource(core.kysely, "Volume", volumeUuid, call.caller);
    const vm = await checkTakeState(core, volume);
    const target = await volumeTarget(core, volume);
    const size = await topFileSize(core, target);
    const newTopFileUuid = newUuid();
    const newTopPath = join(dirname(String(volume.installPath)), `${newTopFileUuid}.qcow2`);
    const snapshotUuid = await reserveSnapshot(core, call, target, size, newTopPath);
    let taken: TakenSnapshot;

    try {
      taken = await takeOnHost(core, target, vm, newTopFileUuid).catch(async (error) => {
        // QEMU may have switched to the new top although the reply failed or was lost. The
        // online take is idempotent, so a second request returns the files in that case.
        if (!vm) {
          throw error;
        }

        core.log.warn({ err: error, volumeUuid, snapshotUuid }, "retrying an online snapshot");
        return takeOnHost(core, target, vm, newTopFileUuid);
      });
    } catch (error) {
      if (await settleFailedTake(core, snapshotUuid, error)) {
        return { inventory: await inventoryOf(core.kysely, "VolumeSnapshot", snapshotUuid) };
      }

      const how = vm ? `online in VM ${vm.uuid}` : "offline";
      throw storageFailure(
        `failed to snapshot volume ${volumeUuid} ${how} on host ${vm?.hostUuid ?? target.hostUuid}`,
        error,
        "check the primary storage directory on that host, then retry",
      );
    }

    return call.commit(async (tx) => ({
      inventory: await commitSnapshot(tx, snapshotUuid, taken, call.caller),
    }));
  });
}

/** Loads a Ready snapshot and its volume, and checks that the VM's state allows `action`. */
async function snapshotContext(
  core: Core,
  uuid: string,
  caller: Caller,
  action: "revert to" | "delete",
) {
  const snapshot = await loadResource(core.kysely, "VolumeSnapshot", uuid, caller);

  if (snapshot.status !== "Ready") {
    throw new ApiError(
      "invalidState",
      `cannot ${action} snapshot ${uuid}: its status is ${String(snapshot.status)}, expected Ready; wait for the operation on it to end`,
    );
  }

  const volume = await loadResource(core.kysely, "Volume", String(snapshot.volumeUuid), caller);

  if (action === "delete") {
    await checkDeleteState(core, snapshot, volume);
  } else {
    await checkStopped(core, volume, `${action} a snapshot of`);
  }

  return { snapshot, volume };
}

async function revertSnapshot(core: Core, call: ApiCall) {
  const uuid = call.path.uuid!;
  const first = await snapshotContext(core, uuid, call.caller, "revert to");

  return inVolumeQueue(core, first.volume, uuid, async () => {
    const { snapshot, volume } = await snapshotContext(core, uuid, call.caller, "revert to");
    const target = await volumeTarget(core, volume);
    let top: VolumeFileInfo;

    try {
      top = await storageCall(core, target.hostUuid, "/storage/snapshot/revert", {
        root: target.root,
        volume: target.ref,
        snapshotFileUuid: snapshotFileUuid(snapshot),
        currentTopFileUuid: String(volume.topFileUuid),
        newTopFileUuid: newUuid(),
      });
    } catch (error) {
      throw storageFailure(
        `failed to revert volume ${String(volume.uuid)} to snapshot ${uuid}`,
        error,
        "check the primary storage directory on the volume's host, then retry",
      );
    }

    return call.commit(async (tx) => {
      await tx
        .updateTable("volumeSnapshots")
        .set({ latest: 0 })
        .where("volumeUuid", "=", String(volume.uuid))
        .execute();
      await tx.updateTable("volumeSnapshots").set({ latest: 1 }).where("uuid", "=", uuid).execute();
      const current = await loadResource(tx, "Volume", String(volume.uuid), call.caller);
      const inventory = await updateResource(tx, "Volume", current, {
        installPath: top.path,
        topFileUuid: top.fileUuid,
        actualSize: top.actualSize,
      });
      return { inventory };
    });
  });
}

async function setSnapshotStatus(core: Core, snapshot: Row, status: string) {
  await core.transact(async (tx) => {
    const row = await loadResource(tx, "VolumeSnapshot", String(snapshot.uuid), {
      accountUuid: String(snapshot.accountUuid),
      isAdmin: true,
    } as Caller);
    await updateResource(tx, "VolumeSnapshot", row, { status });
  });
}

async function deleteSnapshot(core: Core, call: ApiCall) {
  const uuid = call.path.uuid!;
  const first = await snapshotContext(core, uuid, call.caller, "delete");

  return inVolumeQueue(core, first.volume, uuid, async () => {
    const { snapshot, volume } = await snapshotContext(core, uuid, call.caller, "delete");
    const target = await volumeTarget(core, volume);
    await setSnapshotStatus(core, snapshot, "Deleting");

    try {
      await storageCallAsync(
        core,
        target.hostUuid,
        "/storage/snapshot/delete",
        {
          root: target.root,
          volume: target.ref,
          snapshotFileUuid: snapshotFileUuid(snapshot),
          currentTopFileUuid: String(volume.topFileUuid),
        },
        { timeoutMs: 3 * 60 * 60 * 1000, signal: call.signal },
      );
    } catch (error) {
      await setSnapshotStatus(core, snapshot, "Ready");
      throw storageFailure(
        `failed to delete snapshot ${uuid} of volume ${String(volume.uuid)}`,
        error,
        "check the primary storage directory on the volume's host, then retry",
      );
    }

    return call.commit(async (tx) => {
      const row = await loadResource(tx, "VolumeSnapshot", uuid, call.caller);
      const size = Number(row.size);

      // The files based on the deleted one now rest on its parent, and so do their snapshots.
      await tx
        .updateTable("volumeSnapshots")
        .set({ parentUuid: (row.parentUuid as string | null) ?? null })
        .where("parentUuid", "=", uuid)
        .execute();

      if (Number(row.latest) === 1 && row.parentUuid) {
        await tx
          .updateTable("volumeSnapshots")
          .set({ latest: 1 })
          .where("uuid", "=", String(row.parentUuid))
          .execute();
      }

      await deleteResourceRow(tx, "VolumeSnapshot", row);
      const current = await loadResource(tx, "Volume", String(volume.uuid), call.caller);
      await returnCapacity(
        tx,
        String(current.primaryStorageUuid),
        (current.hostUuid as string | null) ?? null,
        size,
      );
      await updateResource(tx, "Volume", current, {
        reservedCapacity: Math.max(0, Number(current.reservedCapacity) - size),
      });
      return {};
    });
  });
}

export function snapshotHandlers(): ApiHandlers {
  const createVolumeSnapshot: ApiHandler = {
    async check(core, call) {
      const volume = await loadResource(core.kysely, "Volume", call.path.volumeUuid!, call.caller);
      await checkTakeState(core, volume);
    },
    queueKey: (call) => call.path.volumeUuid,
    run: takeSnapshot,
  };

  return {
    createVolumeSnapshot,
    revertVolumeFromSnapshot: {
      check: async (core, call) =>
        void (await snapshotContext(core, call.path.uuid!, call.caller, "revert to")),
      run: revertSnapshot,
    },
    deleteVolumeSnapshot: {
      async check(core, call) {
        deleteMode(call);
        await snapshotContext(core, call.path.uuid!, call.caller, "delete");
      },
      run: deleteSnapshot,
    },
  };
}
