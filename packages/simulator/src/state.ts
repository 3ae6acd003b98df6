/** A host as an admin registers it with the simulator. */
export interface HostRegistration {
  uuid: string;
  /** Per-host secret that signs commands, callbacks and reports, as with a real agent. */
  secret: string;
  cpuNum: number;
  /** Memory in bytes. */
  memoryBytes: number;
}

/** A primary or backup storage as an admin registers it with the simulator. */
export interface StorageRegistration {
  uuid: string;
  kind: "primary" | "backup";
  /** Storage path; primary storage commands on any host with this `root` use this storage. */
  url: string;
  /** Bytes. */
  totalCapacity: number;
  /** Bytes free at registration; volumes and images written later take from it. */
  availableCapacity: number;
  /** Secret signing the commands sent to a backup storage; primary storage is reached via hosts. */
  secret?: string;
  /**
   * Images a backup storage already holds, such as after the management node restarted. Each is
   * stored as a download of its URL would have stored it. The admin channel does not read this
   * field, because an external simulator keeps its images when the management node restarts.
   */
  images?: Array<{ imageUuid: string; url: string }>;
}

/** A VM that a simulated host runs; stopped VMs leave the host, as QEMU processes do. */
export interface SimVm {
  vmUuid: string;
  state: "Running" | "Paused";
  cpuNum: number;
  memoryMiB: number;
  /** Install paths of the disks given at start and plugged in since. */
  disks: string[];
  /** MAC addresses of the NICs given at start. */
  macs: string[];
  /** Tap names of the NICs given at start, the InterfaceName label of NIC metrics. */
  tapNames: string[];
  vncPort: number;
}

/** One file of a volume chain (the top file or a snapshot). */
export interface SimFile {
  fileUuid: string;
  path: string;
  virtualSize: number;
  actualSize: number;
  backingFile?: string;
}

/** A volume on a primary storage path, with its files from base to top. */
export interface SimVolume {
  volumeUuid: string;
  type: string;
  accountUuid: string;
  files: SimFile[];
}

/** An image in a simulated image store or image cache. */
export interface SimImage {
  imageUuid: string;
  format: "qcow2" | "raw";
  virtualSize: number;
  actualSize: number;
  sha256: string;
  md5: string;
  sourceUrl: string;
  createdAt: string;
}

/** Files under one primary storage path: volumes and the image cache. */
export interface SimPrimaryFiles {
  volumes: Map<string, SimVolume>;
  imageCache: Map<string, SimImage>;
}

/** Everything a simulated host keeps: its VMs, network devices and local storage paths. */
export interface SimHost extends HostRegistration {
  hostUuid: string | null;
  sendCommandUrl: string | null;
  bootId: string;
  vms: Map<string, SimVm>;
  /** L2 network uuid to bridge name. */
  bridges: Map<string, string>;
  /** L3 network uuid to its DHCP reservations (MAC to IP). */
  dhcp: Map<string, Map<string, string>>;
  /** `<l3NetworkUuid>/<ip>` to the VM uuid whose userdata is served there. */
  userdata: Map<string, string>;
  /** L3 network uuids with SNAT applied. */
  nat: Set<string>;
  /** Rules last applied per NIC uuid, as the `/network/securitygroup/apply` body lists them. */
  securityGroupNics: Map<string, unknown[]>;
  /** Member addresses per remote group uuid, as the last apply that named the group sent them. */
  remoteGroups: Map<string, string[]>;
  /** Primary storage paths that no registered storage owns, so they are local to this host. */
  localFiles: Map<string, SimPrimaryFiles>;
  /** The last `/monitoring/config`; without one the host pushes no metrics. */
  monitoring?: SimMonitoring;
}

/** Where and how often a simulated host pushes synthetic metric batches. */
export interface SimMonitoring {
  intervalSeconds: number;
  /** Management node URL of the host's signed metric batches; null pushes nothing. */
  pushUrl: string | null;
}

/** A registered storage with its files. */
export interface SimStorage extends Omit<StorageRegistration, "images"> {
  /** Backup storage: the images it stores. */
  images: Map<string, SimImage>;
  /** Primary storage: its volumes and image cache, shared by every host. */
  files: SimPrimaryFiles;
}

/** The state of one simulated host or storage, as JSON for the admin channel. */
export interface NodeState {
  uuid: string;
  kind: "host" | "primary" | "backup";
  vms?: SimVm[];
  bridges?: Record<string, string>;
  dhcp?: Record<string, Record<string, string>>;
  userdata?: string[];
  nat?: string[];
  securityGroupNics?: string[];
  /** Rules last applied per NIC uuid. */
  securityGroupRules?: Record<string, unknown[]>;
  /** Member addresses per remote group uuid. */
  remoteGroups?: Record<string, string[]>;
  volumes?: SimVolume[];
  imageCache?: string[];
  images?: SimImage[];
  usedCapacity?: number;
}

export function newPrimaryFiles(): SimPrimaryFiles {
  return { volumes: new Map(), imageCache: new Map() };
}

/** Bytes that the volumes and cached images of a primary storage path take. */
export function usedBytes(files: SimPrimaryFiles) {
  let used = 0;

  for (const volume of files.volumes.values()) {
    for (const file of volume.files) {
      used += file.actualSize;
    }
  }

  for (const image of files.imageCache.values()) {
    used += image.actualSize;
  }

  return used;
}

/** Describes a host's state as JSON. */
export function hostState(host: SimHost): NodeState {
  return {
    uuid: host.uuid,
    kind: "host",
    vms: [...host.vms.values()].map((vm) => ({ ...vm })),
    bridges: Object.fromEntries(host.bridges),
    dhcp: Object.fromEntries(
      [...host.dhcp].map(([l3, entries]) => [l3, Object.fromEntries(entries)]),
    ),
    userdata: [...host.userdata.keys()],
    nat: [...host.nat],
    securityGroupNics: [...host.securityGroupNics.keys()],
    securityGroupRules: Object.fromEntries(host.securityGroupNics),
    remoteGroups: Object.fromEntries(host.remoteGroups),
    volumes: [...host.localFiles.values()].flatMap((files) => [...files.volumes.values()]),
    imageCache: [...host.localFiles.values()].flatMap((files) => [...files.imageCache.keys()]),
  };
}

/** Describes a storage's state as JSON. */
export function storageState(storage: SimStorage): NodeState {
  if (storage.kind === "backup") {
    const images = [...storage.images.values()];
    return {
      uuid: storage.uuid,
      kind: "backup",
      images,
      usedCapacity: images.reduce((sum, image) => sum + image.actualSize, 0),
    };
  }

  return {
    uuid: storage.uuid,
    kind: "primary",
    volumes: [...storage.files.volumes.values()],
    imageCache: [...storage.files.imageCache.keys()],
    usedCapacity: usedBytes(storage.files),
  };
}
