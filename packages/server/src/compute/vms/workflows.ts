import { ApiError } from "@tstack/api";
import type { Transaction } from "kysely";
import type { Core } from "../../core/core.js";
import { newUuid } from "../../core/ids.js";
import type { Step } from "../../core/workflow.js";
import type { Database } from "../../db/schema.js";
import { deleteResourceRow } from "../../resources/crud.js";
import { CONTAINER_HYPERVISOR, containerStartSpec } from "../containers.js";
import { alreadyGone, cleanUpOnHost, replayCleanups } from "../hosts/cleanups.js";
import { agentTarget } from "../hosts/connect.js";
import type { NicAttachment, VolumeAttachment } from "../vm-resources.js";
import { allocateHost, release } from "./allocator.js";
import { forgetCreationSpec } from "./creation-spec.js";
import { loadVm, setVmState } from "./state.js";
import type { VmState } from "./states.js";

/** The persisted state of a VM workflow. */
export interface VmData {
  vmUuid: string;
  jobUuid?: string;
  /** State to return to when the workflow rolls back. */
  fromState?: VmState;
  /** Host whose capacity this workflow reserved; released on rollback. */
  hostUuid?: string;
  /** Host or cluster the caller asked for. */
  requestedHostUuid?: string;
  requestedClusterUuid?: string;
  l3NetworkUuids?: string[];
  staticIps?: Record<string, string>;
  rootDiskSize?: number;
  /** End state: Running, or Stopped for the CreateStopped strategy. */
  endState?: "Running" | "Stopped";
  force?: boolean;
  /** Set on the first start of a JustCreate VM, whose creation spec `finish` removes. */
  firstStart?: boolean;
  /** The NICs as prepared on the host, for the start command that follows. */
  nicAttachments?: NicAttachment[];
}

function volumes(core: Core) {
  if (!core.services.volumes) {
    throw new ApiError(
      "operationFailed",
      "no storage module provides volumes on this management node",
    );
  }

  return core.services.volumes;
}

function nics(core: Core) {
  if (!core.services.nics) {
    throw new ApiError(
      "operationFailed",
      "no network module provides VM NICs on this management node",
    );
  }

  return core.services.nics;
}

/** Steps shared by the VM workflows, built once per management node. */
export function vmSteps(core: Core) {
  const progress = (data: VmData, text: string) => {
    if (data.jobUuid) {
      void core.jobs.progress(data.jobUuid, 0, text);
    }
  };

  const clustersForNetworks = async (tx: Transaction<Database>, l3NetworkUuids: string[]) => {
    if (l3NetworkUuids.length === 0 || !core.services.nics?.clustersReaching) {
      return undefined;
    }

    return core.services.nics.clustersReaching(l3NetworkUuids, tx);
  };

  /** Reserves capacity on a host and records it on the VM (state Starting). */
  const allocate: Step<VmData> = {
    name: "allocate-host",
    async runInTransaction(tx, data) {
      progress(data, "choosing a host");
      const clusterUuids = await clustersForNetworks(tx, data.l3NetworkUuids ?? []);
      const vm = await loadVm(tx, data.vmUuid);
      data.fromState ??= vm.state as VmState;
      const host = await allocateHost(tx, {
        cpuNum: vm.cpuNum,
        memorySize: Number(vm.memorySize),
        hypervisorType: vm.hypervisorType,
        hostUuid: data.requestedHostUuid ?? vm.lastHostUuid ?? undefined,
        clusterUuid: data.requestedClusterUuid,
        clusterUuids,
      });
      data.hostUuid = host.uuid;
      await setVmState(tx, vm, "Starting", {
        hostUuid: host.uuid,
        zoneUuid: host.zoneUuid,
        clusterUuid: host.clusterUuid,
      });
    },
    async rollback(data) {
      await core.transact(async (tx) => {
        const vm = await tx
          .selectFrom("vmInstances")
          .selectAll()
          .where("uuid", "=", data.vmUuid)
          .executeTakeFirst();

        if (!vm?.hostUuid) {
          return;
        }

        await release(tx, vm.hostUuid, vm.cpuNum, Number(vm.memorySize));
        await setVmState(tx, vm, data.fromState ?? "Stopped", { hostUuid: null });
      });
    },
  };

  /** Creates the root volume and NIC rows of a new VM in one transaction. */
  const allocateResources: Step<VmData> = {
    name: "allocate-volume-and-nics",
    async runInTransaction(tx, data) {
      progress(data, "allocating the root volume and NICs");
      const vm = await loadVm(tx, data.vmUuid);
      const volume = await volumes(core).allocateRootVolume(tx, {
        vmUuid: vm.uuid,
        accountUuid: vm.accountUuid,
        imageUuid: vm.imageUuid!,
        hostUuid: data.hostUuid!,
        size: data.rootDiskSize,
      });

      if ((data.l3NetworkUuids ?? []).length > 0) {
        await nics(core).allocateNics(tx, {
          vmUuid: vm.uuid,
          accountUuid: vm.accountUuid,
          l3NetworkUuids: data.l3NetworkUuids!,
          staticIps: data.staticIps ?? {},
        });
      }

      await tx
        .updateTable("vmInstances")
        .set({ rootVolumeUuid: volume.volumeUuid })
        .where("uuid", "=", vm.uuid)
        .execute();
    },
    async rollback(data) {
      await core.services.nics?.deleteNics(data.vmUuid);
      await core.services.volumes?.deleteVmVolumes(data.vmUuid);
      // A JustCreate VM stays for its next first start, so it must not name the deleted volume.
      await core.kysely
        .updateTable("vmInstances")
        .set({ rootVolumeUuid: null })
        .where("uuid", "=", data.vmUuid)
        .execute();
    },
  };

  const instantiateVolume: Step<VmData> = {
    name: "instantiate-root-volume",
    async run(data, signal) {
      progress(data, "preparing the root volume on the host");
      const vm = await loadVm(core.kysely, data.vmUuid);
      await volumes(core).instantiateRootVolume(vm.rootVolumeUuid!, data.hostUuid!, signal);
    },
  };

  const prepareNics: Step<VmData> = {
    name: "prepare-nics",
    async run(data, signal) {
      progress(data, "preparing networks on the host");
      await flushCleanups(core, data.vmUuid, data.hostUuid!);

      if (core.services.nics) {
        data.nicAttachments = await core.services.nics.prepareNicsOnHost(
          data.vmUuid,
          data.hostUuid!,
          signal,
        );
      }
    },
    async rollback(data) {
      if (data.hostUuid) {
        await core.services.nics?.releaseNicsOnHost(data.vmUuid, data.hostUuid);
      }
    },
  };

  const startOnHost: Step<VmData> = {
    name: "start-on-hypervisor",
    async run(data, signal) {
      progress(data, "starting QEMU");
      const vm = await loadVm(core.kysely, data.vmUuid);
      const disks: VolumeAttachment[] = await volumes(core).vmVolumes(vm.uuid);
      const attachments = data.nicAttachments ?? [];
      const cdrom = await core.kysely
        .selectFrom("vmCdRoms")
        .select("installPath")
        .where("vmInstanceUuid", "=", vm.uuid)
        .executeTakeFirst();
      const spec = {
        vmUuid: vm.uuid,
        memoryMiB: Math.floor(Number(vm.memorySize) / 1024 / 1024),
        cpuNum: vm.cpuNum,
        disks: disks.map((disk) => ({ path: disk.installPath, format: disk.format })),
        nics: attachments
          .sort((a, b) => a.deviceId - b.deviceId)
          .map((nic) => ({ mac: nic.mac, bridgeName: nic.bridgeName, tapName: nic.tapName })),
        ...(cdrom ? { cdrom: { path: cdrom.installPath, format: "qcow2" } } : {}),
        vncPassword: newUuid().slice(0, 8),
      };
      const body =
        vm.hypervisorType === CONTAINER_HYPERVISOR
          ? await containerStartSpec(core, vm, data.hostUuid!, disks, attachments)
          : spec;
      const target = await agentTarget(core, data.hostUuid!);
      const timeoutMs = core.config.number("vm", "start.timeout") * 1000;
      await core.agents.callAsync(target, "/vm/start", body, { timeoutMs, signal });
    },
    async rollback(data) {
      if (data.hostUuid) {
        await destroyOnHost(core, data.vmUuid, data.hostUuid, { rollback: true });
      }
    },
  };

  /**
   * Ends a create or start: Running, or Stopped with capacity returned for CreateStopped. The
   * first start of a JustCreate VM consumes its creation spec in the same transaction.
   */
  const finish: Step<VmData> = {
    name: "finish",
    async runInTransaction(tx, data) {
      const vm = await loadVm(tx, data.vmUuid);
      const end = data.endState ?? "Running";

      if (data.firstStart) {
        await forgetCreationSpec(tx, vm.uuid);
      }

      if (end === "Running") {
        await setVmState(tx, vm, "Running", { lastHostUuid: data.hostUuid });
        return;
      }

      await release(tx, data.hostUuid!, vm.cpuNum, Number(vm.memorySize));
      await setVmState(tx, vm, end, {
        hostUuid: null,
        lastHostUuid: data.hostUuid,
      });
    },
  };

  /** Removes a VM row whose creation failed, so nothing half-made stays visible. */
  const record: Step<VmData> = {
    name: "record",
    async runInTransaction() {},
    async rollback(data) {
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
  };

  return {
    allocate,
    allocateResources,
    instantiateVolume,
    prepareNics,
    startOnHost,
    finish,
    record,
  };
}

/**
 * Runs what an earlier run of the VM on this host left to clean up while the host was down,
 * such as its old QEMU process or DHCP entry, before the VM starts there again.
 */
async function flushCleanups(core: Core, vmUuid: string, hostUuid: string) {
  const kept = await replayCleanups(core, hostUuid, vmUuid);

  if (kept > 0) {
    throw new ApiError(
      "operationFailed",
      `host ${hostUuid} still has ${kept} cleanups of an earlier run of VM ${vmUuid} that failed`,
      "see the management node log for their errors, fix the host, then retry the start",
    );
  }
}

/**
 * Stops and removes a VM's QEMU process and taps on a host; a VM the agent does not know is fine.
 * On an unreachable host the destroy is kept and runs when the host connects again. A rollback
 * keeps it when the agent refuses it too, so the VM's row is not deleted over a failed undo
 * while the process may still run: the kept destroy is retried until the host takes it.
 */
export async function destroyOnHost(
  core: Core,
  vmUuid: string,
  hostUuid: string,
  options: { rollback?: boolean } = {},
) {
  try {
    await cleanUpOnHost(core, {
      hostUuid,
      vmUuid,
      path: "/vm/destroy",
      body: { vmUuid },
      async: true,
      reason: `destroy VM ${vmUuid}`,
      keepOnError: options.rollback,
    });
  } catch (error) {
    if (!alreadyGone(error)) {
      throw error;
    }
  }
}

/** Returns a VM's resources on its host after it stopped: NICs, then capacity. */
export async function releaseFromHost(core: Core, vmUuid: string, endState: VmState) {
  const vm = await loadVm(core.kysely, vmUuid);

  if (vm.hostUuid) {
    await core.services.nics?.releaseNicsOnHost(vmUuid, vm.hostUuid);
  }

  await core.transact(async (tx) => {
    const current = await loadVm(tx, vmUuid);

    if (current.hostUuid) {
      await release(tx, current.hostUuid, current.cpuNum, Number(current.memorySize));
    }

    await setVmState(tx, current, endState, {
      hostUuid: null,
      lastHostUuid: current.hostUuid ?? current.lastHostUuid,
    });
  });
}
