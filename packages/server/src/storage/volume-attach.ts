import { ApiError } from "@tstack/api";
import type { Kysely, Transaction } from "kysely";
import { agentTarget } from "../compute/hosts/connect.js";
import { loadVm } from "../compute/vms/state.js";
import type { Core } from "../core/core.js";
import { now } from "../core/ids.js";
import type { Step } from "../core/workflow.js";
import { WorkflowError } from "../core/workflow.js";
import type { Database, VmInstanceTable, VolumeTable } from "../db/schema.js";
import { inventoryOf, loadResource } from "../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../rest/api.js";
import { agentReason, storageCall } from "./agent.js";
import { reservationFor, reserveCapacity, returnCapacity } from "./capacity.js";

type Db = Kysely<Database> | Transaction<Database>;

/**
 * Data volumes one VM may have. The agent starts a VM with at most 16 disks, and the root
 * volume is one of them.
 */
export const MAX_DATA_VOLUMES = 15;

/** VM states in which a data volume may be attached or detached, and how. */
const HOT_STATES = ["Running"];
const COLD_STATES = ["Stopped", "Created"];

/** Milliseconds the agent gets for a hotplug; a detach also waits for the guest. */
const HOTPLUG_TIMEOUT_MS = 120_000;

/** The persisted state of an attach or detach workflow. */
interface AttachData {
  volumeUuid: string;
  vmUuid: string;
  /** Host of the running VM whose QEMU gets the disk; unset for a cold attach. */
  hotplugHostUuid?: string;
  /** Set once this workflow reserved capacity for the volume's file; rollback undoes both. */
  instantiated?: boolean;
}

/**
 * Returns where a VM's volumes live: its root volume's primary storage, and for local storage
 * the host whose disk contains it, which is also the only host the VM can run on.
 */
export async function vmPlacement(db: Db, vm: VmInstanceTable) {
  const root = vm.rootVolumeUuid
    ? await db
        .selectFrom("volumes")
        .select(["primaryStorageUuid", "hostUuid"])
        .where("uuid", "=", vm.rootVolumeUuid)
        .executeTakeFirst()
    : undefined;

  if (!root?.primaryStorageUuid) {
    throw new ApiError(
      "invalidState",
      `VM ${vm.uuid} has no root volume on a primary storage yet; wait until its creation ends`,
    );
  }

  return { primaryStorageUuid: root.primaryStorageUuid, hostUuid: root.hostUuid };
}

async function loadVolumeRow(db: Db, volumeUuid: string) {
  const volume = await db
    .selectFrom("volumes")
    .selectAll()
    .where("uuid", "=", volumeUuid)
    .executeTakeFirst();

  if (!volume) {
    throw new ApiError("notFound", `volume ${volumeUuid} was not found`);
  }

  return volume;
}

/**
 * Checks the attach rules: a Ready or NotInstantiated, Enabled data volume that no VM uses, a
 * Running or Stopped VM with a free device slot, and the volume on the VM's primary storage
 * (and host, for local storage).
 */
async function checkAttach(db: Db, volume: VolumeTable, vm: VmInstanceTable) {
  const what = `cannot attach volume ${volume.uuid} to VM ${vm.uuid}`;

  if (volume.type !== "Data") {
    throw new ApiError(
      "invalidArgument",
      `${what}: it is a ${volume.type} volume; only data volumes attach, a root volume stays with its VM`,
    );
  }

  if (volume.vmInstanceUuid) {
    throw new ApiError(
      "invalidState",
      `${what}: it is already attached to VM ${volume.vmInstanceUuid}; detach it first (detachDataVolumeFromVm)`,
    );
  }

  if (volume.status !== "Ready" && volume.status !== "NotInstantiated") {
    throw new ApiError(
      "invalidState",
      `${what}: its status is ${volume.status}, expected Ready or NotInstantiated`,
    );
  }

  if (volume.state !== "Enabled") {
    throw new ApiError(
      "invalidState",
      `${what}: it is ${volume.state}; enable it first (changeVolumeState)`,
    );
  }

  if (![...HOT_STATES, ...COLD_STATES].includes(vm.state)) {
    throw new ApiError(
      "invalidState",
      `${what}: the VM is ${vm.state}; volumes attach to Running or Stopped VMs`,
    );
  }

  const placement = await vmPlacement(db, vm);

  if (volume.primaryStorageUuid && volume.primaryStorageUuid !== placement.primaryStorageUuid) {
    throw new ApiError(
      "invalidArgument",
      `${what}: the volume is on primary storage ${volume.primaryStorageUuid} and the VM on ${placement.primaryStorageUuid}; a data volume attaches only to VMs on its primary storage`,
    );
  }

  if (volume.primaryStorageUuid && volume.hostUuid !== placement.hostUuid) {
    throw new ApiError(
      "invalidArgument",
      `${what}: the volume is on the local storage of host ${volume.hostUuid} and the VM on host ${placement.hostUuid}; a local volume attaches only to VMs of its host`,
    );
  }

  const attached = await dataVolumesOf(db, vm.uuid);

  if (attached.length >= MAX_DATA_VOLUMES) {
    throw new ApiError(
      "invalidState",
      `${what}: the VM already has ${attached.length} data volumes, the maximum; detach one first`,
    );
  }

  return placement;
}

function dataVolumesOf(db: Db, vmUuid: string) {
  return db
    .selectFrom("volumes")
    .select(["uuid", "deviceId"])
    .where("vmInstanceUuid", "=", vmUuid)
    .where("type", "=", "Data")
    .execute();
}

/** Returns the lowest device number from 1 up that no other data volume of the VM has. */
async function freeDeviceId(db: Db, vmUuid: string) {
  const taken = new Set((await dataVolumesOf(db, vmUuid)).map((volume) => volume.deviceId));
  let deviceId = 1;

  while (taken.has(deviceId)) {
    deviceId += 1;
  }

  return deviceId;
}

async function callAgent(core: Core, hostUuid: string, path: string, body: object) {
  const target = await agentTarget(core, hostUuid);
  return core.agents.callAsync(target, path, body, { timeoutMs: HOTPLUG_TIMEOUT_MS });
}

/** Claims the volume for the VM in one transaction, so a second attach finds it taken. */
function claimStep(core: Core): Step<AttachData> {
  return {
    name: "claim-volume",
    async run(data) {
      await core.transact(async (tx) => {
        const volume = await loadVolumeRow(tx, data.volumeUuid);
        const vm = await loadVm(tx, data.vmUuid);
        await checkAttach(tx, volume, vm);

        if (HOT_STATES.includes(vm.state)) {
          data.hotplugHostUuid = vm.hostUuid ?? undefined;
        }

        const claimed = await tx
          .updateTable("volumes")
          .set({
            vmInstanceUuid: vm.uuid,
            deviceId: await freeDeviceId(tx, vm.uuid),
            lastOpDate: now(),
            version: volume.version + 1,
          })
          .where("uuid", "=", volume.uuid)
          .where("version", "=", volume.version)
          .where("vmInstanceUuid", "is", null)
          .executeTakeFirst();

        if (Number(claimed.numUpdatedRows) !== 1) {
          throw new ApiError(
            "invalidState",
            `volume ${volume.uuid} changed while this request ran; retry it`,
          );
        }
      });
    },
    async rollback(data) {
      await core.kysely
        .updateTable("volumes")
        .set({ vmInstanceUuid: null, deviceId: null, lastOpDate: now() })
        .where("uuid", "=", data.volumeUuid)
        .where("vmInstanceUuid", "=", data.vmUuid)
        .execute();
    },
  };
}

/**
 * Makes the file of a NotInstantiated volume on the VM's primary storage (and host), reserving
 * its capacity first. Rollback deletes the file, returns the capacity and restores the status.
 */
function instantiateStep(core: Core): Step<AttachData> {
  return {
    name: "instantiate-volume",
    async run(data) {
      const volume = await loadVolumeRow(core.kysely, data.volumeUuid);

      if (volume.status !== "NotInstantiated") {
        return;
      }

      const vm = await loadVm(core.kysely, data.vmUuid);
      const placement = await vmPlacement(core.kysely, vm);
      const amount = reservationFor(core, Number(volume.size));
      await reserveForAttach(core, volume, placement, amount);
      data.instantiated = true;

      const ps = await core.kysely
        .selectFrom("primaryStorages")
        .select("url")
        .where("uuid", "=", placement.primaryStorageUuid)
        .executeTakeFirstOrThrow();
      const hostUuid = placement.hostUuid ?? vm.hostUuid ?? vm.lastHostUuid;

      if (!hostUuid) {
        throw new ApiError(
          "operationFailed",
          `no host of VM ${vm.uuid} is known to create volume ${volume.uuid} on; start the VM once`,
        );
      }

      let file: { path: string; fileUuid: string; actualSize: number };

      try {
        file = await storageCall(core, hostUuid, "/storage/volume/data/create", {
          root: ps.url,
          accountUuid: volume.accountUuid,
          volumeUuid: volume.uuid,
          size: Number(volume.size),
        });
      } catch (error) {
        throw new ApiError(
          "operationFailed",
          `failed to create the file of volume ${volume.uuid} on primary storage ${placement.primaryStorageUuid} (host ${hostUuid}): ${agentReason(error)}`,
          "check the primary storage directory on that host, then retry",
        );
      }

      await core.kysely
        .updateTable("volumes")
        .set({
          status: "Ready",
          installPath: file.path,
          topFileUuid: file.fileUuid,
          actualSize: file.actualSize,
          lastOpDate: now(),
        })
        .where("uuid", "=", volume.uuid)
        .execute();
    },
    async rollback(data) {
      const volume = await loadVolumeRow(core.kysely, data.volumeUuid);

      // After a crash `data` may predate the reservation, but the row's Creating status shows it.
      if (!data.instantiated && volume.status !== "Creating") {
        return;
      }

      if (!volume.primaryStorageUuid) {
        return;
      }

      const ps = await core.kysely
        .selectFrom("primaryStorages")
        .select("url")
        .where("uuid", "=", volume.primaryStorageUuid)
        .executeTakeFirstOrThrow();
      const vm = await loadVm(core.kysely, data.vmUuid);
      const agentHost = volume.hostUuid ?? vm.hostUuid ?? vm.lastHostUuid;

      // Deleting a volume directory that was never made succeeds.
      if (agentHost) {
        await storageCall(core, agentHost, "/storage/volume/delete", {
          root: ps.url,
          volume: { type: "Data", accountUuid: volume.accountUuid, volumeUuid: volume.uuid },
        });
      }

      await core.transact(async (tx) => {
        await returnCapacity(
          tx,
          volume.primaryStorageUuid!,
          volume.hostUuid,
          Number(volume.reservedCapacity),
        );
        await tx
          .updateTable("volumes")
          .set({
            status: "NotInstantiated",
            primaryStorageUuid: null,
            hostUuid: null,
            reservedCapacity: 0,
            installPath: null,
            topFileUuid: null,
            actualSize: 0,
            lastOpDate: now(),
          })
          .where("uuid", "=", volume.uuid)
          .execute();
      });
    },
  };
}

async function reserveForAttach(
  core: Core,
  volume: VolumeTable,
  placement: { primaryStorageUuid: string; hostUuid: string | null },
  amount: number,
) {
  await core.transact(async (tx) => {
    const reserved = await reserveCapacity(
      core,
      tx,
      placement.primaryStorageUuid,
      placement.hostUuid,
      amount,
    );

    // Throwing rolls back the transaction, with a storage-wide part taken before the host's
    // share ran short.
    if (!reserved) {
      throw new ApiError(
        "operationFailed",
        `primary storage ${placement.primaryStorageUuid} has not ${amount} bytes free above primaryStorage.reservedCapacity for volume ${volume.uuid}`,
        "choose a smaller volume or free capacity on the VM's primary storage",
      );
    }

    await tx
      .updateTable("volumes")
      .set({
        status: "Creating",
        primaryStorageUuid: placement.primaryStorageUuid,
        hostUuid: placement.hostUuid,
        reservedCapacity: amount,
      })
      .where("uuid", "=", volume.uuid)
      .execute();
  });
}

/** Plugs the volume into the running VM's QEMU; rollback unplugs it again. */
function hotplugStep(core: Core): Step<AttachData> {
  return {
    name: "hotplug-volume",
    async run(data) {
      if (!data.hotplugHostUuid) {
        return;
      }

      const volume = await loadVolumeRow(core.kysely, data.volumeUuid);

      try {
        await callAgent(core, data.hotplugHostUuid, "/vm/volume/attach", {
          vmUuid: data.vmUuid,
          volumeUuid: volume.uuid,
          path: volume.installPath,
          format: volume.format,
        });
      } catch (error) {
        throw new ApiError(
          "operationFailed",
          `failed to hotplug volume ${volume.uuid} (${String(volume.installPath)}) into VM ${data.vmUuid} on host ${data.hotplugHostUuid}: ${agentReason(error)}`,
          "check the volume file with qemu-img check, or stop the VM and attach it then",
        );
      }
    },
    // A crash can end the step after QEMU took the disk, so this unplugs whenever the VM still
    // runs; the agent replies detached: false when no disk uses the path.
    async rollback(data) {
      if (!data.hotplugHostUuid) {
        return;
      }

      const vm = await loadVm(core.kysely, data.vmUuid);
      const volume = await loadVolumeRow(core.kysely, data.volumeUuid);

      if (vm.state !== "Running" || vm.hostUuid !== data.hotplugHostUuid || !volume.installPath) {
        return;
      }

      await callAgent(core, data.hotplugHostUuid, "/vm/volume/detach", {
        vmUuid: data.vmUuid,
        path: volume.installPath,
      });
    },
  };
}

/**
 * Unplugs the volume from the running VM; the guest must release it first. Running it again is
 * safe, because the agent replies detached: false for a disk that is gone.
 */
function unplugStep(core: Core): Step<AttachData> {
  return {
    name: "unplug-volume",
    resumable: true,
    async run(data) {
      const vm = await loadVm(core.kysely, data.vmUuid).catch(() => undefined);

      if (!vm || !HOT_STATES.includes(vm.state) || !vm.hostUuid) {
        return;
      }

      const volume = await loadVolumeRow(core.kysely, data.volumeUuid);

      try {
        await callAgent(core, vm.hostUuid, "/vm/volume/detach", {
          vmUuid: vm.uuid,
          path: volume.installPath,
        });
      } catch (error) {
        throw new ApiError(
          "operationFailed",
          `failed to unplug volume ${volume.uuid} from VM ${vm.uuid} on host ${vm.hostUuid}: ${agentReason(error)}`,
          "the guest must support ACPI PCI hotplug; or stop the VM and detach the volume then",
        );
      }
    },
  };
}

function releaseStep(core: Core): Step<AttachData> {
  return {
    name: "release-volume",
    resumable: true,
    async run(data) {
      await core.kysely
        .updateTable("volumes")
        .set({ vmInstanceUuid: null, deviceId: null, lastOpDate: now() })
        .where("uuid", "=", data.volumeUuid)
        .where("vmInstanceUuid", "=", data.vmUuid)
        .execute();
    },
  };
}

/** Registers the attach and detach workflows; their result is the volume's inventory. */
export function registerAttachWorkflows(core: Core) {
  const result = (data: AttachData) => inventoryOf(core.kysely, "Volume", data.volumeUuid);

  core.workflows.register<AttachData>({
    name: "attach-data-volume",
    steps: [claimStep(core), instantiateStep(core), hotplugStep(core)],
    result,
  });
  core.workflows.register<AttachData>({
    name: "detach-data-volume",
    steps: [unplugStep(core), releaseStep(core)],
    result,
  });
}

/** Turns a failed workflow into the API error of its step, saying whether it was rolled back. */
function workflowFailure(error: unknown) {
  if (error instanceof WorkflowError && error.cause instanceof ApiError) {
    const undone = error.rolledBack ? "everything it did was rolled back" : "rollback failed";
    return new ApiError(
      error.cause.kind,
      `${error.cause.details} (step ${error.step}; ${undone})`,
      error.cause.elaboration,
    );
  }

  return error;
}

/** Runs an attach or detach workflow for an API call and returns the volume's inventory. */
async function runWorkflow(core: Core, call: ApiCall, name: string, data: AttachData) {
  try {
    await core.workflows.run(name, data, { jobUuid: call.jobUuid, signal: call.signal });
  } catch (error) {
    throw workflowFailure(error);
  }

  return { inventory: await inventoryOf(core.kysely, "Volume", data.volumeUuid) };
}

/**
 * Queue keys decided in `check`: attach and detach run in the VM's queue, so they never overlap
 * a start, stop or another disk change of the same VM.
 */
const queueKeys = new WeakMap<ApiCall, string>();

const attachDataVolumeToVm: ApiHandler = {
  async check(core, call) {
    const volume = await loadResource(core.kysely, "Volume", call.path.volumeUuid!, call.caller);
    const vm = await loadResource(
      core.kysely,
      "VmInstance",
      call.path.vmInstanceUuid!,
      call.caller,
    );
    await checkAttach(
      core.kysely,
      volume as unknown as VolumeTable,
      vm as unknown as VmInstanceTable,
    );
  },
  queueKey: (call) => call.path.vmInstanceUuid,
  async run(core, call) {
    const data = { volumeUuid: call.path.volumeUuid!, vmUuid: call.path.vmInstanceUuid! };
    return runWorkflow(core, call, "attach-data-volume", data);
  },
};

const detachDataVolumeFromVm: ApiHandler = {
  async check(core, call) {
    const volume = await loadResource(core.kysely, "Volume", call.path.uuid!, call.caller);
    const what = `cannot detach volume ${call.path.uuid}`;
    const vmUuid = typeof call.query.vmUuid === "string" ? call.query.vmUuid : undefined;

    if (volume.type !== "Data") {
      throw new ApiError(
        "invalidArgument",
        `${what}: it is a ${String(volume.type)} volume; only data volumes detach`,
      );
    }

    if (!volume.vmInstanceUuid) {
      throw new ApiError("invalidState", `${what}: it is not attached to a VM`);
    }

    if (vmUuid && vmUuid !== volume.vmInstanceUuid) {
      throw new ApiError(
        "invalidArgument",
        `${what} from VM ${vmUuid}: it is attached to VM ${String(volume.vmInstanceUuid)}`,
      );
    }

    const vm = await loadVm(core.kysely, String(volume.vmInstanceUuid));

    if (![...HOT_STATES, ...COLD_STATES, "Destroyed"].includes(vm.state)) {
      throw new ApiError(
        "invalidState",
        `${what}: its VM ${vm.uuid} is ${vm.state}; volumes detach from Running, Stopped or Destroyed VMs`,
      );
    }

    queueKeys.set(call, vm.uuid);
  },
  queueKey: (call) => queueKeys.get(call),
  async run(core, call) {
    const volume = await loadVolumeRow(core.kysely, call.path.uuid!);

    if (!volume.vmInstanceUuid) {
      throw new ApiError(
        "invalidState",
        `cannot detach volume ${volume.uuid}: it was detached meanwhile`,
      );
    }

    const data = { volumeUuid: volume.uuid, vmUuid: volume.vmInstanceUuid };
    return runWorkflow(core, call, "detach-data-volume", data);
  },
};

/** Lists the VMs a data volume may be attached to now, by the same rules as the attach. */
const getDataVolumeAttachableVm: ApiHandler = {
  async run(core, call) {
    const volume = await loadResource(core.kysely, "Volume", call.path.volumeUuid!, call.caller);
    let query = core.kysely
      .selectFrom("vmInstances")
      .selectAll()
      .where("state", "in", [...HOT_STATES, ...COLD_STATES]);

    if (!call.caller.isAdmin) {
      query = query.where("accountUuid", "=", call.caller.accountUuid);
    }

    const inventories = [];

    for (const vm of await query.execute()) {
      const fits = await checkAttach(core.kysely, volume as unknown as VolumeTable, vm).then(
        () => true,
        () => false,
      );

      if (fits) {
        inventories.push(await inventoryOf(core.kysely, "VmInstance", vm.uuid));
      }
    }

    return { inventories };
  },
};

/** Lists the data volumes that may be attached to a VM now, by the same rules as the attach. */
const getVmAttachableDataVolume: ApiHandler = {
  async run(core, call) {
    const vm = await loadResource(
      core.kysely,
      "VmInstance",
      call.path.vmInstanceUuid!,
      call.caller,
    );
    let query = core.kysely
      .selectFrom("volumes")
      .selectAll()
      .where("type", "=", "Data")
      .where("vmInstanceUuid", "is", null)
      .where("status", "in", ["Ready", "NotInstantiated"]);

    if (!call.caller.isAdmin) {
      query = query.where("accountUuid", "=", call.caller.accountUuid);
    }

    const inventories = [];

    for (const volume of await query.execute()) {
      const fits = await checkAttach(core.kysely, volume, vm as unknown as VmInstanceTable).then(
        () => true,
        () => false,
      );

      if (fits) {
        inventories.push(await inventoryOf(core.kysely, "Volume", volume.uuid));
      }
    }

    return { inventories };
  },
};

export function attachHandlers(): ApiHandlers {
  return {
    attachDataVolumeToVm,
    detachDataVolumeFromVm,
    getDataVolumeAttachableVm,
    getVmAttachableDataVolume,
  };
}
