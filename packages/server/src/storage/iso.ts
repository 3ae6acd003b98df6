import { ApiError } from "@tstack/api";
import { agentTarget } from "../compute/hosts/connect.js";
import { loadVm } from "../compute/vms/state.js";
import type { Core } from "../core/core.js";
import { now } from "../core/ids.js";
import type { VmInstanceTable } from "../db/schema.js";
import { inventoryOf, loadReadableResource, loadResource } from "../resources/crud.js";
import type { ApiHandler, ApiHandlers } from "../rest/api.js";
import { agentReason } from "./agent.js";
import { vmPlacement } from "./attach-rules.js";
import { type StorageVolumeService, volumeHost } from "./volume-service.js";

/** VM states in which an ISO may be attached or detached; Running ones change it at once. */
const ISO_STATES = ["Running", "Stopped", "Created"];

async function callAgent(core: Core, hostUuid: string, path: string, body: object) {
  const target = await agentTarget(core, hostUuid);
  return core.agents.callAsync(target, path, body, { timeoutMs: 60_000 });
}

function checkVmState(vm: VmInstanceTable, api: string) {
  if (!ISO_STATES.includes(vm.state)) {
    throw new ApiError(
      "invalidState",
      `cannot run ${api} on VM ${vm.uuid}: it is ${vm.state}; ISO images attach to and detach from Running or Stopped VMs`,
    );
  }
}

async function checkAttachIso(core: Core, vm: VmInstanceTable, isoUuid: string) {
  checkVmState(vm, "attachIsoToVmInstance");
  const image = await core.kysely
    .selectFrom("images")
    .select(["mediaType", "status", "state"])
    .where("uuid", "=", isoUuid)
    .executeTakeFirstOrThrow();

  if (image.mediaType !== "ISO") {
    throw new ApiError(
      "invalidArgument",
      `image ${isoUuid} is a ${image.mediaType}; only ISO images attach as a CD-ROM`,
    );
  }

  if (image.status !== "Ready" || image.state !== "Enabled") {
    throw new ApiError(
      "invalidState",
      `image ${isoUuid} is ${image.status} and ${image.state}; attach a Ready, Enabled ISO`,
    );
  }

  const attached = await core.kysely
    .selectFrom("vmCdRoms")
    .select("isoUuid")
    .where("vmInstanceUuid", "=", vm.uuid)
    .executeTakeFirst();

  if (attached) {
    throw new ApiError(
      "invalidState",
      `VM ${vm.uuid} has ISO ${attached.isoUuid} in its CD-ROM drive; detach it first (detachIsoFromVmInstance)`,
    );
  }
}

/**
 * Copies the ISO into the image cache of the VM's primary storage, on the VM's host for local
 * storage, and returns the cached file.
 */
async function cacheIso(
  core: Core,
  service: StorageVolumeService,
  vm: VmInstanceTable,
  isoUuid: string,
) {
  const placement = await vmPlacement(core.kysely, vm);
  const hostUuid = await volumeHost(core, {
    primaryStorageUuid: placement.primaryStorageUuid,
    hostUuid: placement.hostUuid ?? vm.hostUuid,
  });

  if (!hostUuid) {
    throw new ApiError(
      "operationFailed",
      `no connected host reaches primary storage ${placement.primaryStorageUuid} to cache ISO ${isoUuid}`,
      "reconnect a host of the storage's clusters, then retry",
    );
  }

  const cached = await service.cacheImage(placement.primaryStorageUuid, hostUuid, isoUuid);
  return { primaryStorageUuid: placement.primaryStorageUuid, path: cached.path };
}

function attachIsoToVmInstance(service: StorageVolumeService): ApiHandler {
  return {
    async check(core, call) {
      await loadReadableResource(core.kysely, "Image", call.path.isoUuid!, call.caller);
      const vm = await loadResource(
        core.kysely,
        "VmInstance",
        call.path.vmInstanceUuid!,
        call.caller,
      );
      await checkAttachIso(core, vm as unknown as VmInstanceTable, call.path.isoUuid!);
    },
    queueKey: (call) => call.path.vmInstanceUuid,
    async run(core, call) {
      const vm = await loadVm(core.kysely, call.path.vmInstanceUuid!);
      const isoUuid = call.path.isoUuid!;
      await checkAttachIso(core, vm, isoUuid);
      const cached = await cacheIso(core, service, vm, isoUuid);

      if (vm.state === "Running" && vm.hostUuid) {
        try {
          await callAgent(core, vm.hostUuid, "/vm/iso/attach", {
            vmUuid: vm.uuid,
            path: cached.path,
            format: "qcow2",
          });
        } catch (error) {
          throw new ApiError(
            "operationFailed",
            `failed to insert ISO ${isoUuid} into the CD-ROM drive of VM ${vm.uuid} on host ${vm.hostUuid}: ${agentReason(error)}`,
            "check the cached ISO on the host, or stop the VM and attach it then",
          );
        }
      }

      await core.kysely
        .insertInto("vmCdRoms")
        .values({
          vmInstanceUuid: vm.uuid,
          isoUuid,
          primaryStorageUuid: cached.primaryStorageUuid,
          installPath: cached.path,
          createDate: now(),
        })
        .execute();
      return { inventory: await inventoryOf(core.kysely, "VmInstance", vm.uuid) };
    },
  };
}

const detachIsoFromVmInstance: ApiHandler = {
  async check(core, call) {
    const vm = await loadResource(
      core.kysely,
      "VmInstance",
      call.path.vmInstanceUuid!,
      call.caller,
    );
    checkVmState(vm as unknown as VmInstanceTable, "detachIsoFromVmInstance");
    const attached = await core.kysely
      .selectFrom("vmCdRoms")
      .select("isoUuid")
      .where("vmInstanceUuid", "=", String(vm.uuid))
      .executeTakeFirst();
    const isoUuid = typeof call.query.isoUuid === "string" ? call.query.isoUuid : undefined;

    if (!attached) {
      throw new ApiError(
        "invalidState",
        `cannot detach an ISO: VM ${String(vm.uuid)} has no ISO attached`,
      );
    }

    if (isoUuid && isoUuid !== attached.isoUuid) {
      throw new ApiError(
        "invalidArgument",
        `isoUuid: VM ${String(vm.uuid)} has ISO ${attached.isoUuid} attached, not ${isoUuid}`,
      );
    }
  },
  queueKey: (call) => call.path.vmInstanceUuid,
  async run(core, call) {
    const vm = await loadVm(core.kysely, call.path.vmInstanceUuid!);
    checkVmState(vm, "detachIsoFromVmInstance");

    if (vm.state === "Running" && vm.hostUuid) {
      try {
        await callAgent(core, vm.hostUuid, "/vm/iso/detach", { vmUuid: vm.uuid });
      } catch (error) {
        throw new ApiError(
          "operationFailed",
          `failed to eject the ISO of VM ${vm.uuid} on host ${vm.hostUuid}: ${agentReason(error)}`,
          "retry, or stop the VM and detach the ISO then",
        );
      }
    }

    await core.kysely.deleteFrom("vmCdRoms").where("vmInstanceUuid", "=", vm.uuid).execute();
    return { inventory: await inventoryOf(core.kysely, "VmInstance", vm.uuid) };
  },
};

/** Lists the VMs an ISO may be attached to now: Running or Stopped ones with an empty drive. */
const getCandidateVmForAttachingIso: ApiHandler = {
  async run(core, call) {
    const isoUuid = call.path.isoUuid!;
    const image = await core.kysely
      .selectFrom("images")
      .select("mediaType")
      .where("uuid", "=", isoUuid)
      .executeTakeFirst();

    if (image?.mediaType !== "ISO") {
      throw new ApiError(
        "invalidArgument",
        `image ${isoUuid} is ${image ? `a ${image.mediaType}` : "not found"}; give an ISO image`,
      );
    }

    let query = core.kysely
      .selectFrom("vmInstances")
      .select("uuid")
      .where("state", "in", ISO_STATES)
      .where("rootVolumeUuid", "is not", null)
      .where("uuid", "not in", core.kysely.selectFrom("vmCdRoms").select("vmInstanceUuid"));

    if (!call.caller.isAdmin) {
      query = query.where("accountUuid", "=", call.caller.accountUuid);
    }

    const inventories = [];

    for (const vm of await query.execute()) {
      inventories.push(await inventoryOf(core.kysely, "VmInstance", vm.uuid));
    }

    return { inventories };
  },
};

export function isoHandlers(service: StorageVolumeService): ApiHandlers {
  return {
    attachIsoToVmInstance: attachIsoToVmInstance(service),
    detachIsoFromVmInstance,
    getCandidateVmForAttachingIso,
  };
}
