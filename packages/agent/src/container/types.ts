import type { VmInfo, VmReport } from "../vm/types.js";

export type { VmInfo, VmReport };

/** The address a NIC gets inside the container, configured by the agent before init runs. */
export interface ContainerIpv4 {
  /** Address in CIDR form, e.g. `10.0.0.5/24`. */
  address: string;
  gateway?: string;
}

/** One veth NIC: the host end joins the bridge where a VM's tap would. */
export interface ContainerNicSpec {
  /** MAC address in lower-case colon form, set on the container end. */
  mac: string;
  /** Bridge that already exists on the host, made by the network side of the agent. */
  bridgeName: string;
  /** Host end of the veth pair; `vnic<first 8 hex of the UUID>.<index>` when unset, like a tap. */
  tapName?: string;
  /**
   * Static address. Without it the NIC stays unconfigured, because the container lacks
   * CAP_NET_ADMIN to run a DHCP client.
   */
  ipv4?: ContainerIpv4;
}

/** Root filesystem image: a tar archive on this host, unpacked once into the image cache. */
export interface ContainerRootfs {
  /** Image UUID, the name of its folder in the image cache. */
  imageUuid: string;
  /** Absolute path of the tar, tar.gz or tar.xz file on this host. */
  tarPath: string;
  /**
   * Directory that keeps the container's writes (the overlay's upper layer), e.g. the root
   * volume on primary storage; its sibling `work` is the overlay work directory. The run
   * directory's `upper` when unset, which destroy removes.
   */
  upperDir?: string;
}

/** Everything needed to start one container; the body of `/vm/start` with `hypervisorType: "Container"`. */
export interface ContainerSpec {
  hypervisorType: "Container";
  /** VM UUID: 32 lower-case hex digits. */
  vmUuid: string;
  /** Memory limit in MiB. */
  memoryMiB: number;
  /** CPU limit: a CFS quota of this many CPUs. */
  cpuNum: number;
  /** Relative CPU weight (cgroup v1 cpu.shares); 1024 per CPU when unset. */
  cpuShares?: number;
  /** Maximum number of tasks; 1024 when unset. */
  pidsLimit?: number;
  rootfs: ContainerRootfs;
  nics: ContainerNicSpec[];
  /** Host name inside the container; `ct-<first 8 hex of the UUID>` when unset. */
  hostname?: string;
  /** DNS servers written to the container's /etc/resolv.conf. */
  dns?: string[];
  /** Command line of the container's init; `/sbin/init` when unset. */
  init?: string[];
}
