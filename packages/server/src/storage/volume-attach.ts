import { ApiError } from "@tstack/api";
import { loadVm } from "../compute/vms/state.js";
import type { Core } from "../core/core.js";
import { WorkflowError } from "../core/workflow.js";
import type { VmInstanceTable, VolumeTable } from "../db/schema.js";
import { inventoryOf, loadResource } from "../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../rest/api.js";
import { COLD_STATES, checkAttach, HOT_STATES, loadVolumeRow } from "./attach-rules.js";
import type { AttachData } from "./attach-workflows.js";

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
