import { ApiError } from "@tstack/api";
import type { Transaction } from "kysely";
import type { Core } from "../../core/core.js";
import { newUuid } from "../../core/ids.js";
import { WorkflowError } from "../../core/workflow.js";
import type { Database } from "../../db/schema.js";
import { checkQuota } from "../../identity/quotas.js";
import type { Caller } from "../../identity/sessions.js";
import {
  insertResource,
  inventoryOf,
  isReadableBy,
  loadResource,
  queryHandler,
  updateHandler,
} from "../../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../../rest/api.js";
import { vmHypervisorType } from "../../simulator/hypervisor.js";
import { hypervisorTypeOfImage } from "../containers.js";
import { agentTarget } from "../hosts/connect.js";
import { type CreationSpec, loadCreationSpec, saveCreationSpec } from "./creation-spec.js";
import { checkAction, loadVm } from "./state.js";
import { ALLOWED_ACTIONS, type VmState } from "./states.js";
import { checkHostnameFree, checkVmTags } from "./tags.js";
import type { VmData } from "./workflows.js";

async function offeringSize(core: Core, params: Record<string, unknown>) {
  if (params.instanceOfferingUuid) {
    const offering = await core.kysely
      .selectFrom("instanceOfferings")
      .select(["cpuNum", "memorySize", "state"])
      .where("uuid", "=", String(params.instanceOfferingUuid))
      .executeTakeFirst();

    if (!offering) {
      throw new ApiError(
        "invalidArgument",
        `params.instanceOfferingUuid: instance offering ${String(params.instanceOfferingUuid)} was not found`,
      );
    }

    if (offering.state !== "Enabled") {
      throw new ApiError(
        "invalidArgument",
        `params.instanceOfferingUuid: instance offering ${String(params.instanceOfferingUuid)} is ${offering.state}`,
      );
    }

    return { cpuNum: offering.cpuNum, memorySize: Number(offering.memorySize) };
  }

  if (params.cpuNum === undefined || params.memorySize === undefined) {
    throw new ApiError(
      "invalidArgument",
      "params: give instanceOfferingUuid, or both cpuNum and memorySize",
    );
  }

  return { cpuNum: Number(params.cpuNum), memorySize: Number(params.memorySize) };
}

/**
 * Rejects an unknown image or L3 network before the job starts, naming the field. An image the
 * caller may not read counts as unknown.
 */
async function checkReferences(core: Core, params: Record<string, unknown>, caller: Caller) {
  const image = await core.kysely
    .selectFrom("images")
    .select(["status", "state", "accountUuid"])
    .where("uuid", "=", String(params.imageUuid))
    .executeTakeFirst();

  if (
    !image ||
    image.status === "Deleted" ||
    !(await isReadableBy(core.kysely, "Image", image, caller))
  ) {
    throw new ApiError(
      "invalidArgument",
      `params.imageUuid: image ${String(params.imageUuid)} was not found; query /zstack/v1/images for usable images`,
    );
  }

  if (image.status !== "Ready" || image.state !== "Enabled") {
    throw new ApiError(
      "invalidArgument",
      `params.imageUuid: image ${String(params.imageUuid)} is ${image.status} and ${image.state}; use a Ready, Enabled image`,
    );
  }

  const l3s = (params.l3NetworkUuids as string[] | undefined) ?? [];

  if (l3s.length > 0) {
    const found = await core.kysely
      .selectFrom("l3Networks")
      .select("uuid")
      .where("uuid", "in", l3s)
      .execute();
    const missing = l3s.filter((uuid) => !found.some((row) => row.uuid === uuid));

    if (missing.length > 0) {
      throw new ApiError(
        "invalidArgument",
        `params.l3NetworkUuids: L3 network ${missing.join(", ")} was not found`,
      );
    }
  }
}

function workflowFailure(error: unknown) {
  if (error instanceof WorkflowError && error.cause instanceof ApiError) {
    return new ApiError(
      error.cause.kind,
      `${error.cause.details} (step ${error.step}; everything it did was rolled back)`,
      error.cause.elaboration,
    );
  }

  return error;
}

const createVm: ApiHandler = {
  async check(core, call) {
    if (
      call.params.instanceOfferingUuid &&
      (call.params.cpuNum !== undefined || call.params.memorySize !== undefined)
    ) {
      throw new ApiError(
        "invalidArgument",
        "params: give instanceOfferingUuid, or cpuNum and memorySize, not both",
      );
    }

    const size = await offeringSize(core, call.params);
    const account = { uuid: call.caller.accountUuid, isAdmin: call.caller.isAdmin };
    await checkQuota(core.kysely, account, "vm.num", 1);
    await checkQuota(core.kysely, account, "vm.cpuNum", size.cpuNum);
    await checkQuota(core.kysely, account, "vm.memorySize", size.memorySize);
    await checkReferences(core, call.params, call.caller);
    const l3s = (call.params.l3NetworkUuids as string[] | undefined) ?? [];
    const tags = checkVmTags(call.systemTags, l3s);

    if (tags.hostname) {
      await checkHostnameFree(core, tags.hostname, l3s);
    }

    if (
      call.params.defaultL3NetworkUuid &&
      !l3s.includes(String(call.params.defaultL3NetworkUuid))
    ) {
      throw new ApiError(
        "invalidArgument",
        "params.defaultL3NetworkUuid must be one of params.l3NetworkUuids",
      );
    }
  },
  async run(core, call) {
    const size = await offeringSize(core, call.params);
    const l3NetworkUuids = (call.params.l3NetworkUuids as string[] | undefined) ?? [];
    const { staticIps } = checkVmTags(call.systemTags, l3NetworkUuids);
    const vmUuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
    const account = { uuid: call.caller.accountUuid, isAdmin: call.caller.isAdmin };
    // A container image makes a container; otherwise the requested host, cluster or image's
    // storage decides between a KVM and a simulator VM.
    const imageType = await hypervisorTypeOfImage(core.kysely, String(call.params.imageUuid));
    const hypervisorType =
      imageType === "KVM" ? await vmHypervisorType(core.kysely, call.params) : imageType;
    const strategy = String(call.params.strategy ?? "InstantStart");
    const spec: CreationSpec = {
      l3NetworkUuids,
      staticIps,
      rootDiskSize: call.params.rootDiskSize as number | undefined,
      requestedHostUuid: call.params.hostUuid as string | undefined,
      requestedClusterUuid: call.params.clusterUuid as string | undefined,
    };

    const record = async (tx: Transaction<Database>) => {
      await checkQuota(tx, account, "vm.num", 1);
      await checkQuota(tx, account, "vm.cpuNum", size.cpuNum);
      await checkQuota(tx, account, "vm.memorySize", size.memorySize);
      await insertResource(
        tx,
        core,
        "VmInstance",
        {
          uuid: vmUuid,
          name: call.params.name,
          description: call.params.description ?? null,
          zoneUuid: call.params.zoneUuid ?? null,
          clusterUuid: null,
          hostUuid: null,
          lastHostUuid: null,
          imageUuid: call.params.imageUuid,
          instanceOfferingUuid: call.params.instanceOfferingUuid ?? null,
          rootVolumeUuid: null,
          defaultL3NetworkUuid: call.params.defaultL3NetworkUuid ?? l3NetworkUuids[0] ?? null,
          type: "UserVm",
          hypervisorType,
          state: "Created",
          cpuNum: size.cpuNum,
          memorySize: size.memorySize,
          platform: "Linux",
          allocatorStrategy: "DefaultHostAllocatorStrategy",
          expungeDate: null,
        },
        { ...call, params: { ...call.params, resourceUuid: vmUuid } },
      );

      if (strategy === "JustCreate") {
        await saveCreationSpec(tx, vmUuid, spec);
      }
    };

    if (strategy === "JustCreate") {
      await core.transact(record);
      return { inventory: await inventoryOf(core.kysely, "VmInstance", vmUuid) };
    }

    try {
      await core.workflows.run(
        strategy === "InstantStart" ? "create-vm" : "create-vm-stopped",
        {
          vmUuid,
          jobUuid: call.jobUuid,
          ...spec,
          endState: strategy === "InstantStart" ? "Running" : "Stopped",
        },
        // The VM row commits with the workflow row, whose rollback removes it again.
        { jobUuid: call.jobUuid, signal: call.signal, begin: record },
      );
    } catch (error) {
      throw workflowFailure(error);
    }

    return { inventory: await inventoryOf(core.kysely, "VmInstance", vmUuid) };
  },
};

/** The workflow an action runs and the data it starts with. */
type ActionPlan = (
  core: Core,
  call: ApiCall,
) => Promise<{ workflow: string; data: Partial<VmData> }>;

/** An action that checks the VM's state, then runs a workflow in the VM's queue. */
function vmAction(
  apiName: string,
  workflow: string,
  data: (call: ApiCall) => Partial<VmData> = () => ({}),
): ApiHandler {
  return plannedVmAction(apiName, async (_core, call) => ({ workflow, data: data(call) }));
}

/** Like `vmAction`, with the workflow chosen when the action runs. */
function plannedVmAction(apiName: string, plan: ActionPlan): ApiHandler {
  return {
    async check(core, call) {
      await loadResource(core.kysely, "VmInstance", call.path.uuid!, call.caller);
      checkAction(await loadVm(core.kysely, call.path.uuid!), apiName, ALLOWED_ACTIONS[apiName]!);
    },
    async run(core, call) {
      const vm = await loadVm(core.kysely, call.path.uuid!);
      checkAction(vm, apiName, ALLOWED_ACTIONS[apiName]!);
      const { workflow, data } = await plan(core, call);

      // The state to roll back to is stored with the workflow row at its start. The mark step
      // records it too, but its data is stored only after the step ends, so a crash just after
      // the step's state change would leave the rollback without it.
      const initial = { vmUuid: vm.uuid, jobUuid: call.jobUuid, fromState: vm.state as VmState };

      try {
        await core.workflows.run(
          workflow,
          { ...initial, ...data },
          { jobUuid: call.jobUuid, signal: call.signal },
        );
      } catch (error) {
        throw workflowFailure(error);
      }

      return workflow === "expunge-vm"
        ? {}
        : { inventory: await inventoryOf(core.kysely, "VmInstance", vm.uuid) };
    },
  };
}

/**
 * Starts a VM. The first start of a JustCreate VM allocates what its create call asked for,
 * with the host or cluster of the start call taking precedence.
 */
const startVm = plannedVmAction("startVmInstance", async (core, call) => {
  const hostUuid = call.params.hostUuid as string | undefined;
  const clusterUuid = call.params.clusterUuid as string | undefined;
  const spec = await loadCreationSpec(core.kysely, call.path.uuid!);

  if (!spec) {
    return {
      workflow: "start-vm",
      data: { requestedHostUuid: hostUuid, requestedClusterUuid: clusterUuid },
    };
  }

  return {
    workflow: "start-created-vm",
    data: {
      ...spec,
      firstStart: true,
      requestedHostUuid: hostUuid ?? spec.requestedHostUuid,
      requestedClusterUuid: clusterUuid ?? spec.requestedClusterUuid,
    },
  };
});

export const vmHandlers: ApiHandlers = {
  createVmInstance: createVm,
  queryVmInstance: queryHandler("VmInstance"),
  updateVmInstance: updateHandler("VmInstance"),
  startVmInstance: startVm,
  stopVmInstance: vmAction("stopVmInstance", "stop-vm", (call) => ({
    force: call.params.type === "cold",
  })),
  rebootVmInstance: vmAction("rebootVmInstance", "reboot-vm"),
  pauseVmInstance: vmAction("pauseVmInstance", "pause-vm"),
  resumeVmInstance: vmAction("resumeVmInstance", "resume-vm"),
  destroyVmInstance: vmAction("destroyVmInstance", "destroy-vm"),
  expungeVmInstance: vmAction("expungeVmInstance", "expunge-vm"),
  recoverVmInstance: {
    async check(core, call) {
      await loadResource(core.kysely, "VmInstance", call.path.uuid!, call.caller);
      checkAction(
        await loadVm(core.kysely, call.path.uuid!),
        "recoverVmInstance",
        ALLOWED_ACTIONS.recoverVmInstance!,
      );
    },
    run: (_core, call) =>
      call.commit(async (tx) => {
        const { setVmState } = await import("./state.js");
        const vm = await loadVm(tx, call.path.uuid!);
        checkAction(vm, "recoverVmInstance", ALLOWED_ACTIONS.recoverVmInstance!);
        // A JustCreate VM that never started has no volume to start from, so it returns to Created.
        const spec = await loadCreationSpec(tx, vm.uuid);
        await setVmState(tx, vm, spec ? "Created" : "Stopped", { expungeDate: null });
        return { inventory: await inventoryOf(tx, "VmInstance", vm.uuid) };
      }),
  },
  changeInstanceOffering: {
    async check(core, call) {
      await loadResource(core.kysely, "VmInstance", call.path.uuid!, call.caller);
      checkAction(
        await loadVm(core.kysely, call.path.uuid!),
        "changeInstanceOffering",
        ALLOWED_ACTIONS.changeInstanceOffering!,
      );
      await offeringSize(core, call.params);
    },
    async run(core, call) {
      const size = await offeringSize(core, call.params);
      return call.commit(async (tx) => {
        const vm = await loadVm(tx, call.path.uuid!);
        checkAction(vm, "changeInstanceOffering", ALLOWED_ACTIONS.changeInstanceOffering!);
        const account = { uuid: vm.accountUuid, isAdmin: call.caller.isAdmin };
        await checkQuota(tx, account, "vm.cpuNum", Math.max(0, size.cpuNum - vm.cpuNum));
        await checkQuota(
          tx,
          account,
          "vm.memorySize",
          Math.max(0, size.memorySize - Number(vm.memorySize)),
        );
        await tx
          .updateTable("vmInstances")
          .set({
            cpuNum: size.cpuNum,
            memorySize: size.memorySize,
            instanceOfferingUuid: String(call.params.instanceOfferingUuid),
            version: vm.version + 1,
          })
          .where("uuid", "=", vm.uuid)
          .where("version", "=", vm.version)
          .execute();
        return { inventory: await inventoryOf(tx, "VmInstance", vm.uuid) };
      });
    },
  },
  getVmConsoleLog: {
    async run(core, call) {
      await loadResource(core.kysely, "VmInstance", call.path.uuid!, call.caller);
      const vm = await loadVm(core.kysely, call.path.uuid!);
      const bytes = Number(call.query.bytes ?? 65536);

      if (!Number.isInteger(bytes) || bytes < 1 || bytes > 1024 * 1024) {
        throw new ApiError(
          "invalidArgument",
          `invalid bytes '${String(call.query.bytes)}': expected an integer from 1 to 1048576`,
        );
      }

      const hostUuid = vm.hostUuid ?? vm.lastHostUuid;

      if (!hostUuid) {
        throw new ApiError(
          "invalidState",
          `VM ${vm.uuid} has never run on a host, so it has no console log`,
        );
      }

      const reply = await core.agents
        .call<{ console: string }>(await agentTarget(core, hostUuid), "/vm/console", {
          vmUuid: vm.uuid,
          bytes,
        })
        .catch((error: unknown) => {
          throw new ApiError(
            "operationFailed",
            `failed to read the console log of VM ${vm.uuid}: ${error instanceof Error ? error.message : String(error)}`,
            "check that the host is Connected and the VM has run on it since its log was last removed",
          );
        });
      return { vmUuid: vm.uuid, console: reply.console };
    },
  },
};
