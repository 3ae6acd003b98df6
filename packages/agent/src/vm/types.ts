/** VM states the agent reports, following ZStack's KvmVmState names where they exist. */
export type VmState = "Running" | "Paused" | "Stopped" | "Crashed";

/** QEMU accelerator. KVM is used only when the host probe found it working. */
export type Accelerator = "kvm" | "tcg";

/** One virtio disk backed by an existing image file; the agent never creates or deletes it. */
export interface DiskSpec {
  /** Absolute path of the image, without commas. */
  path: string;
  /** Image format; qcow2 when unset. */
  format?: "qcow2" | "raw";
}

/** One virtio-net NIC on a tap device that the agent creates and attaches to a bridge. */
export interface NicSpec {
  /** MAC address in lower-case colon form. */
  mac: string;
  /** Bridge that already exists on the host, made by the network side of the agent. */
  bridgeName: string;
  /** Tap device name; `vnic<first 8 hex of the VM UUID>.<index>` when unset. */
  tapName?: string;
}

/** Everything needed to start one VM. */
export interface VmSpec {
  /** VM UUID: 32 lower-case hex digits. */
  vmUuid: string;
  /** Memory in MiB; Debian guest kernels need at least 96. */
  memoryMiB: number;
  cpuNum: number;
  /** Disks in boot order; the first one boots. */
  disks: DiskSpec[];
  nics: NicSpec[];
  /** ISO image to insert into the VM's CD-ROM drive at start; the drive is empty without it. */
  cdrom?: DiskSpec;
  /** VNC password, set over QMP; VNC rejects every client until it is set. At most 8 bytes count. */
  vncPassword?: string;
}

/** A VM state change the agent did not cause, sent to the management node. */
export interface VmReport {
  vmUuid: string;
  state: VmState;
  reason: string;
}

/** State of one VM as the agent tracks it. */
export interface VmInfo {
  vmUuid: string;
  state: VmState;
  /** QEMU process id while the process runs. */
  pid?: number;
  /** TCP port of the VNC server on 127.0.0.1 while the process runs. */
  vncPort?: number;
}
