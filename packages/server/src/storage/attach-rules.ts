import { ApiError } from "@tstack/api";
import type { Kysely, Transaction } from "kysely";
import type { Database, VmInstanceTable, VolumeTable } from "../db/schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/**
 * Data volumes one VM may have. The agent starts a VM with at most 16 disks, and the root
 * volume is one of them.
 */
export const MAX_DATA_VOLUMES = 15;

/** VM states in which a data volume may be attached or detached, and how. */
export const HOT_STATES = ["Running"];
export const COLD_STATES = ["Stopped", "Created"];

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

export async function loadVolumeRow(db: Db, volumeUuid: string) {
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
export async function checkAttach(db: Db, volume: VolumeTable, vm: VmInstanceTable) {
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

  await checkNoPendingUnplug(db, volume, what);

  const attached = await dataVolumesOf(db, vm.uuid);

  if (attached.length >= MAX_DATA_VOLUMES) {
    throw new ApiError(
      "invalidState",
      `${what}: the VM already has ${attached.length} data volumes, the maximum; detach one first`,
    );
  }

  return placement;
}

/** The agent command that unplugs a disk from a running VM. */
export const UNPLUG_PATH = "/vm/volume/detach";

/**
 * Refuses a volume whose unplug from an earlier VM failed and is kept to run again: its disk
 * may still be in that VM, and a second VM must not write to it too.
 */
async function checkNoPendingUnplug(db: Db, volume: VolumeTable, prefix: string) {
  const cleanups = await db
    .selectFrom("hostCleanups")
    .select(["hostUuid", "vmUuid", "body", "lastError"])
    .where("path", "=", UNPLUG_PATH)
    .execute();
  const pending = cleanups.find((row) => JSON.parse(row.body).volumeUuid === volume.uuid);

  if (pending) {
    throw new ApiError(
      "invalidState",
      `${prefix}: its disk may still be plugged into VM ${pending.vmUuid} on host ${pending.hostUuid}, whose unplug failed (${pending.lastError}) and is retried every minute`,
      "wait for the retry to succeed, or stop that VM, then attach again",
    );
  }
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
export async function freeDeviceId(db: Db, vmUuid: string) {
  const taken = new Set((await dataVolumesOf(db, vmUuid)).map((volume) => volume.deviceId));
  let deviceId = 1;

  while (taken.has(deviceId)) {
    deviceId += 1;
  }

  return deviceId;
}
