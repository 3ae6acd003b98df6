import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";

type Row = Record<string, unknown>;

/** The VM a volume is attached to, with the fields that decide online or offline snapshots. */
export interface VolumeVm {
  uuid: string;
  state: string;
  hostUuid: string | null;
}

/** VM states in which QEMU has the volume open, so a snapshot goes through QMP. */
const ONLINE_STATES = ["Running", "Paused"];

/** Returns the VM of an attached volume, or undefined for a free volume. */
export async function volumeVm(core: Core, volume: Row): Promise<VolumeVm | undefined> {
  if (!volume.vmInstanceUuid) {
    return undefined;
  }

  return core.kysely
    .selectFrom("vmInstances")
    .select(["uuid", "state", "hostUuid"])
    .where("uuid", "=", String(volume.vmInstanceUuid))
    .executeTakeFirst();
}

function checkReady(volume: Row, action: string) {
  if (volume.status !== "Ready" || !volume.topFileUuid) {
    throw new ApiError(
      "invalidState",
      `cannot ${action} volume ${String(volume.uuid)}: its status is ${String(volume.status)}; only a Ready volume with a file has snapshots`,
    );
  }
}

function isOnline(vm: VolumeVm | undefined): vm is VolumeVm & { hostUuid: string } {
  return vm !== undefined && ONLINE_STATES.includes(vm.state) && vm.hostUuid !== null;
}

/**
 * Checks that a volume can be snapshotted now. Returns its VM when QEMU has the volume open and
 * the snapshot must go through QMP, or undefined for an offline snapshot with qemu-img.
 */
export async function checkTakeState(core: Core, volume: Row) {
  checkReady(volume, "snapshot");
  const vm = await volumeVm(core, volume);

  if (isOnline(vm)) {
    return vm;
  }

  if (!vm || vm.state === "Stopped") {
    return undefined;
  }

  throw new ApiError(
    "invalidState",
    `cannot snapshot volume ${String(volume.uuid)}: its VM ${vm.uuid} is ${vm.state}; snapshot while the VM is Running, Paused or Stopped`,
  );
}

/** Checks that no running VM has a volume open, for a revert, which replaces the volume's top. */
export async function checkStopped(core: Core, volume: Row, action: string) {
  checkReady(volume, action);
  const vm = await volumeVm(core, volume);

  if (vm && vm.state !== "Stopped") {
    throw new ApiError(
      "invalidState",
      `cannot ${action} volume ${String(volume.uuid)}: its VM ${vm.uuid} is ${vm.state}, and this needs it Stopped; stop it with stopVmInstance, then retry`,
    );
  }
}

/**
 * Returns the snapshots whose files back the volume's current top: the latest snapshot and its
 * ancestors. The volume's top is always an overlay on the latest snapshot, because taking a
 * snapshot makes it the latest and reverting makes the reverted-to snapshot the latest.
 */
export async function activeChain(core: Core, volumeUuid: string) {
  const rows = await core.kysely
    .selectFrom("volumeSnapshots")
    .select(["uuid", "parentUuid", "latest"])
    .where("volumeUuid", "=", volumeUuid)
    .execute();
  const parents = new Map(rows.map((row) => [row.uuid, row.parentUuid]));
  const chain = new Set<string>();

  for (
    let uuid = rows.find((row) => Number(row.latest) === 1)?.uuid ?? null;
    uuid && !chain.has(uuid);
    uuid = parents.get(uuid) ?? null
  ) {
    chain.add(uuid);
  }

  return chain;
}

/**
 * Checks that a snapshot can be deleted now. With the VM stopped every snapshot can. While QEMU
 * has the volume open, only a snapshot outside the backing chain of the volume's top can: the
 * files based on it are then closed, so qemu-img can rebase them. Merging a snapshot inside the
 * open chain would need a QMP block job, which tstack does not run, so that case is rejected.
 */
export async function checkDeleteState(core: Core, snapshot: Row, volume: Row) {
  checkReady(volume, "delete a snapshot of");
  const vm = await volumeVm(core, volume);

  if (!vm || vm.state === "Stopped") {
    return;
  }

  if (!isOnline(vm)) {
    throw new ApiError(
      "invalidState",
      `cannot delete snapshot ${String(snapshot.uuid)}: its VM ${vm.uuid} is ${vm.state}; delete while the VM is Running, Paused or Stopped`,
    );
  }

  if ((await activeChain(core, String(volume.uuid))).has(String(snapshot.uuid))) {
    throw new ApiError(
      "invalidState",
      `cannot delete snapshot ${String(snapshot.uuid)} while VM ${vm.uuid} is ${vm.state}: the VM's disk reads through the snapshot's file; stop the VM with stopVmInstance, then retry`,
    );
  }
}
