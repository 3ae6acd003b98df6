import { ApiError } from "@tstack/api";
import type { Kysely } from "kysely";
import type { Core } from "../core/core.js";
import type { Database } from "../db/schema.js";
import type { NicAttachment, VolumeAttachment } from "./vm-resources.js";

/** Hypervisor type of clusters, hosts and VMs whose instances are runc containers. */
export const CONTAINER_HYPERVISOR = "Container";

/** Hypervisor types whose hosts run the tstack agent and are pinged and synced alike. */
export const AGENT_HYPERVISORS = ["KVM", CONTAINER_HYPERVISOR];

/** Image format of container root filesystems: a tar archive, plain or gzip or xz compressed. */
export const CONTAINER_IMAGE_FORMAT = "tar";

/** Checks whether a VM is a container. */
export async function isContainer(core: Core, vmUuid: string) {
  const vm = await core.kysely
    .selectFrom("vmInstances")
    .select("hypervisorType")
    .where("uuid", "=", vmUuid)
    .executeTakeFirst();

  return vm?.hypervisorType === CONTAINER_HYPERVISOR;
}

/** Picks the hypervisor of a new VM from its image: a `tar` image makes a container. */
export async function hypervisorTypeOfImage(db: Kysely<Database>, imageUuid: string) {
  const image = await db
    .selectFrom("images")
    .select("format")
    .where("uuid", "=", imageUuid)
    .executeTakeFirst();

  return image?.format === CONTAINER_IMAGE_FORMAT ? CONTAINER_HYPERVISOR : "KVM";
}

/**
 * Builds the agent's `/vm/start` body for a container: the image archive in the primary
 * storage's cache is the read-only lower layer, the root volume's directory keeps the writes,
 * and each NIC gets its allocated address set directly by the agent.
 */
export async function containerStartSpec(
  core: Core,
  vm: { uuid: string; imageUuid: string | null; cpuNum: number; memorySize: number | string },
  hostUuid: string,
  disks: VolumeAttachment[],
  nics: NicAttachment[],
) {
  const root = disks[0];

  if (!root || !vm.imageUuid) {
    throw new ApiError(
      "operationFailed",
      `container ${vm.uuid} has no root volume or image; recreate it from a tar image`,
    );
  }

  return {
    hypervisorType: CONTAINER_HYPERVISOR,
    vmUuid: vm.uuid,
    memoryMiB: Math.floor(Number(vm.memorySize) / 1024 / 1024),
    cpuNum: vm.cpuNum,
    rootfs: {
      imageUuid: vm.imageUuid,
      tarPath: await cachedArchive(core, root.volumeUuid, hostUuid, vm.imageUuid),
      upperDir: root.installPath,
    },
    nics: await containerNics(core, vm.uuid, nics),
    dns: await dnsServers(core, nics[0]?.l3NetworkUuid),
  };
}

async function cachedArchive(core: Core, volumeUuid: string, hostUuid: string, imageUuid: string) {
  const cache = await core.kysely
    .selectFrom("volumes")
    .innerJoin("imageCaches", "imageCaches.primaryStorageUuid", "volumes.primaryStorageUuid")
    .select("imageCaches.installUrl")
    .where("volumes.uuid", "=", volumeUuid)
    .where("imageCaches.imageUuid", "=", imageUuid)
    .where("imageCaches.hostUuid", "in", [hostUuid, ""])
    .executeTakeFirst();

  if (!cache) {
    throw new ApiError(
      "operationFailed",
      `image ${imageUuid} is not in the image cache of root volume ${volumeUuid}'s primary storage`,
      "start the container again, which fills the cache",
    );
  }

  return cache.installUrl;
}

async function containerNics(core: Core, vmUuid: string, nics: NicAttachment[]) {
  const rows = await core.kysely
    .selectFrom("vmNics")
    .select(["uuid", "netmask", "gateway"])
    .where("vmInstanceUuid", "=", vmUuid)
    .execute();

  return [...nics]
    .sort((a, b) => a.deviceId - b.deviceId)
    .map((nic) => {
      const row = rows.find((candidate) => candidate.uuid === nic.nicUuid);
      const ipv4 = row?.netmask
        ? { address: `${nic.ip}/${prefixLength(row.netmask)}`, gateway: row.gateway || undefined }
        : undefined;
      return { mac: nic.mac, bridgeName: nic.bridgeName, tapName: nic.tapName, ipv4 };
    });
}

async function dnsServers(core: Core, l3NetworkUuid: string | undefined) {
  if (!l3NetworkUuid) {
    return [];
  }

  const rows = await core.kysely
    .selectFrom("l3Dns")
    .select("dns")
    .where("l3NetworkUuid", "=", l3NetworkUuid)
    .orderBy("position")
    .execute();

  // The agent writes at most three name servers, the limit of the resolv.conf format.
  return rows.map((row) => row.dns).slice(0, 3);
}

function prefixLength(netmask: string) {
  return netmask
    .split(".")
    .map((part) => Number(part).toString(2).replace(/0/g, "").length)
    .reduce((sum, bits) => sum + bits, 0);
}
