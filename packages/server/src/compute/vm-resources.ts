import type { Kysely, Transaction } from "kysely";
import type { Database } from "../db/schema.js";

/**
 * What the VM workflows need from storage and networking. The storage and network modules
 * provide the implementations at registration (`core.services`), so the VM code depends on
 * these contracts only.
 */

/** A volume as the hypervisor needs it. */
export interface VolumeAttachment {
  volumeUuid: string;
  /** Path of the qcow2 file on the host. */
  installPath: string;
  deviceId: number;
  format: "qcow2" | "raw";
}

export interface VolumeService {
  /**
   * Picks a primary storage usable from `hostUuid` with room for the root volume of `imageUuid`,
   * reserves the capacity, and creates the volume row (status Creating). Runs in the caller's
   * transaction so the reservation commits with the VM's.
   */
  allocateRootVolume(
    tx: Transaction<Database>,
    request: {
      vmUuid: string;
      accountUuid: string;
      imageUuid: string;
      hostUuid: string;
      size?: number;
    },
  ): Promise<{ volumeUuid: string; primaryStorageUuid: string }>;
  /** Makes the root volume file on the host (image cache fill, then a qcow2 overlay); idempotent. */
  instantiateRootVolume(
    volumeUuid: string,
    hostUuid: string,
    signal?: AbortSignal,
  ): Promise<VolumeAttachment>;
  /** Deletes a VM's volume files and rows and returns their capacity; tolerates a half-made volume. */
  deleteVmVolumes(vmUuid: string): Promise<void>;
  /** The volumes to hand to the hypervisor at start, root first. */
  vmVolumes(vmUuid: string): Promise<VolumeAttachment[]>;
}

/** A VM NIC as the hypervisor needs it. */
export interface NicAttachment {
  nicUuid: string;
  mac: string;
  ip: string;
  l3NetworkUuid: string;
  bridgeName: string;
  deviceId: number;
  /** Host device name of the tap, at most 15 characters. */
  tapName: string;
  mtu?: number;
}

export interface NicService {
  /** Allocates the NIC rows and IP addresses of a new VM in the caller's transaction. */
  allocateNics(
    tx: Transaction<Database>,
    request: {
      vmUuid: string;
      accountUuid: string;
      l3NetworkUuids: string[];
      staticIps: Record<string, string>;
    },
  ): Promise<void>;
  /** Ensures the bridge, DHCP, DNS and userdata service of each NIC on the host; idempotent. */
  prepareNicsOnHost(
    vmUuid: string,
    hostUuid: string,
    signal?: AbortSignal,
  ): Promise<NicAttachment[]>;
  /** Undoes prepareNicsOnHost for the VM; removes bridges and namespaces no NIC uses any more. */
  releaseNicsOnHost(vmUuid: string, hostUuid: string): Promise<void>;
  /** Deletes the VM's NICs and returns their IP addresses to the ranges. */
  deleteNics(vmUuid: string): Promise<void>;
  /**
   * Clusters attached to the L2 networks of all these L3 networks, for the host allocator. Pass
   * the caller's transaction as `db` inside one, because on SQLite the transaction has the only connection.
   */
  clustersReaching?(l3NetworkUuids: string[], db?: Kysely<Database>): Promise<string[]>;
}

/** Services that modules provide to each other. */
export interface Services {
  volumes?: VolumeService;
  nics?: NicService;
}
