import type { Core } from "../../core/core.js";
import type { Step } from "../../core/workflow.js";
import { deleteResourceRow } from "../../resources/crud.js";
import { agentTarget } from "../hosts/connect.js";
import { loadVm, setVmState } from "./state.js";
import type { VmState } from "./states.js";
import { destroyOnHost, releaseFromHost, type VmData, vmSteps } from "./workflows.js";

/** Moves the VM into an intermediate state; rolling back restores the state it came from. */
function mark(core: Core, state: VmState): Step<VmData> {
  return {
    name: `mark-${state.toLowerCase()}`,
    async run(data) {
      await core.transact(async (tx) => {
        const vm = await loadVm(tx, data.vmUuid);
        data.fromState ??= vm.state as VmState;
        data.hostUuid ??= vm.hostUuid ?? undefined;
        await setVmState(tx, vm, state);
      });
    },
    async rollback(data) {
      await core.transact(async (tx) => {
        const vm = await tx
          .selectFrom("vmInstances")
          .selectAll()
          .where("uuid", "=", data.vmUuid)
          .executeTakeFirst();

        if (vm && vm.state === state && data.fromState) {
          await setVmState(tx, vm, data.fromState);
        }
      });
    },
  };
}

/** Sends one VM command to the VM's host and waits for its callback. */
function onHost(
  core: Core,
  name: string,
  path: string,
  body: (data: VmData) => object,
  resumable = false,
): Step<VmData> {
  return {
    name,
    resumable,
    async run(data, signal) {
      if (!data.hostUuid) {
        return;
      }

      const target = await agentTarget(core, data.hostUuid);
      await core.agents.callAsync(target, path, body(data), { timeoutMs: 300_000, signal });
    },
  };
}

function setState(core: Core, state: VmState): Step<VmData> {
  return {
    name: `set-${state.toLowerCase()}`,
    resumable: true,
    async run(data) {
      await core.transact(async (tx) => setVmState(tx, await loadVm(tx, data.vmUuid), state));
    },
  };
}

/** Registers every VM workflow. */
export function registerVmWorkflows(core: Core) {
  const steps = vmSteps(core);
  const register = (name: string, list: Step<VmData>[]) =>
    core.workflows.register<VmData>({ name, steps: list });
  const gracefulTimeout = () => core.config.number("vm", "stop.gracefulTimeout");

  register("create-vm", [
    steps.record,
    steps.allocate,
    steps.allocateResources,
    steps.instantiateVolume,
    steps.prepareNics,
    steps.startOnHost,
    steps.finish,
  ]);
  register("create-vm-stopped", [
    steps.record,
    steps.allocate,
    steps.allocateResources,
    steps.instantiateVolume,
    steps.finish,
  ]);
  register("start-created-vm", [
    steps.allocate,
    steps.allocateResources,
    steps.instantiateVolume,
    steps.prepareNics,
    steps.startOnHost,
    steps.finish,
  ]);
  register("start-vm", [
    steps.allocate,
    steps.instantiateVolume,
    steps.prepareNics,
    steps.startOnHost,
    steps.finish,
  ]);

  register("stop-vm", [
    mark(core, "Stopping"),
    onHost(
      core,
      "stop-on-hypervisor",
      "/vm/stop",
      (data) => ({
        vmUuid: data.vmUuid,
        force: data.force ?? false,
        timeoutSeconds: gracefulTimeout(),
      }),
      true,
    ),
    {
      name: "release-host",
      resumable: true,
      run: (data) => releaseFromHost(core, data.vmUuid, "Stopped"),
    },
  ]);

  for (const [name, intermediate, path, end] of [
    ["reboot-vm", "Rebooting", "/vm/reboot", "Running"],
    ["pause-vm", "Pausing", "/vm/pause", "Paused"],
    ["resume-vm", "Resuming", "/vm/resume", "Running"],
  ] as const) {
    register(name, [
      mark(core, intermediate),
      onHost(core, path.slice(1).replace("/", "-"), path, (data) => ({ vmUuid: data.vmUuid })),
      setState(core, end),
    ]);
  }

  register("destroy-vm", [
    mark(core, "Destroying"),
    {
      name: "destroy-on-hypervisor",
      resumable: true,
      async run(data) {
        if (data.hostUuid) {
          await destroyOnHost(core, data.vmUuid, data.hostUuid);
        }
      },
    },
    {
      name: "release-host",
      resumable: true,
      run: (data) => releaseFromHost(core, data.vmUuid, "Destroyed"),
    },
    {
      name: "schedule-expunge",
      resumable: true,
      async run(data) {
        const policy = core.config.get("vm", "deletionPolicy");
        const period = core.config.number("vm", "expungePeriod") * 1000;
        const expungeDate =
          policy === "Never"
            ? null
            : new Date(Date.now() + (policy === "Direct" ? 0 : period)).toISOString();
        await core.kysely
          .updateTable("vmInstances")
          .set({ expungeDate })
          .where("uuid", "=", data.vmUuid)
          .execute();

        if (core.config.get("vm", "ip.releasePolicy") === "OnDestroy") {
          await core.services.nics?.deleteNics(data.vmUuid);
        }
      },
    },
  ]);

  register("expunge-vm", [
    mark(core, "Expunging"),
    {
      name: "delete-volumes",
      resumable: true,
      run: async (data) => core.services.volumes?.deleteVmVolumes(data.vmUuid),
    },
    {
      name: "delete-nics",
      resumable: true,
      run: async (data) => core.services.nics?.deleteNics(data.vmUuid),
    },
    {
      name: "delete-record",
      resumable: true,
      async run(data) {
        await core.transact(async (tx) => {
          const vm = await tx
            .selectFrom("vmInstances")
            .selectAll()
            .where("uuid", "=", data.vmUuid)
            .executeTakeFirst();

          if (vm) {
            await deleteResourceRow(tx, "VmInstance", vm);
          }
        });
      },
    },
  ]);
}
