import { ApiError } from "@tstack/api";
import { alreadyGone, cleanUpOnHost } from "../compute/hosts/cleanups.js";
import { agentTarget } from "../compute/hosts/connect.js";
import { loadVm } from "../compute/vms/state.js";
import type { Core } from "../core/core.js";
import { now } from "../core/ids.js";
import type { Step } from "../core/workflow.js";
import type { VolumeTable } from "../db/schema.js";
import { inventoryOf } from "../resources/crud.js";
import { agentReason, storageCall } from "./agent.js";
import {
  checkAttach,
  freeDeviceId,
  HOT_STATES,
  loadVolumeRow,
  UNPLUG_PATH,
  vmPlacement,
} from "./attach-rules.js";
import { reservationFor, reserveCapacity, returnCapacity } from "./capacity.js";

/** Milliseconds the agent gets for a hotplug; a detach also waits for the guest. */
const HOTPLUG_TIMEOUT_MS = 120_000;

/** The persisted state of an attach or detach workflow. */
export interface AttachData {
  volumeUuid: string;
  vmUuid: string;
  /** Host of the running VM whose QEMU gets the disk; unset for a cold attach. */
  hotplugHostUuid?: string;
  /** Set once this workflow reserved capacity for the volume's file; rollback undoes both. */
  instantiated?: boolean;
}

async function callAgent(
  core: Core,
  hostUuid: string,
  path: string,
  body: object,
  signal?: AbortSignal,
) {
  const target = await agentTarget(core, hostUuid);
  return core.agents.callAsync(target, path, body, { timeoutMs: HOTPLUG_TIMEOUT_MS, signal });
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
    async run(data, signal) {
      if (!data.hotplugHostUuid) {
        return;
      }

      const volume = await loadVolumeRow(core.kysely, data.volumeUuid);

      try {
        const disk = {
          vmUuid: data.vmUuid,
          volumeUuid: volume.uuid,
          path: volume.installPath,
          format: volume.format,
        };
        await callAgent(core, data.hotplugHostUuid, "/vm/volume/attach", disk, signal);
      } catch (error) {
        throw new ApiError(
          "operationFailed",
          `failed to hotplug volume ${volume.uuid} (${String(volume.installPath)}) into VM ${data.vmUuid} on host ${data.hotplugHostUuid}: ${agentReason(error)}`,
          "check the volume file with qemu-img check, or stop the VM and attach it then",
        );
      }
    },
    // A crash can end the step after QEMU took the disk, so this unplugs whenever the VM still
    // runs. The agent replies detached: false when no disk uses the path. An unplug the agent
    // refuses is kept and retried, and the volume attaches nowhere until it succeeds.
    async rollback(data) {
      if (!data.hotplugHostUuid) {
        return;
      }

      const vm = await loadVm(core.kysely, data.vmUuid);
      const volume = await loadVolumeRow(core.kysely, data.volumeUuid);

      if (vm.state !== "Running" || vm.hostUuid !== data.hotplugHostUuid || !volume.installPath) {
        return;
      }

      await cleanUpOnHost(core, {
        hostUuid: data.hotplugHostUuid,
        vmUuid: data.vmUuid,
        path: UNPLUG_PATH,
        body: { vmUuid: data.vmUuid, volumeUuid: volume.uuid, path: volume.installPath },
        async: true,
        reason: `unplug volume ${volume.uuid} from VM ${data.vmUuid}`,
        keepOnError: true,
      }).catch((error) => {
        if (!alreadyGone(error)) {
          throw error;
        }
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
        await callAgent(core, vm.hostUuid, UNPLUG_PATH, {
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
