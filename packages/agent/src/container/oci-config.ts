import type { ContainerPaths } from "./paths.js";
import type { ResolvedContainerSpec } from "./spec.js";

/** Names on the host that belong to one container. */
export interface ContainerHostNames {
  /** runc container id. */
  containerId: string;
  /** Path of the network namespace the agent made, e.g. `/run/netns/<name>`. */
  netnsPath: string;
  /** cgroup path below every v1 hierarchy root. */
  cgroupsPath: string;
}

const CFS_PERIOD_US = 100_000;

// Capabilities that ordinary services need. Missing on purpose: SYS_ADMIN (mounts),
// NET_ADMIN (the agent sets the addresses), SYS_MODULE, SYS_TIME, SYS_RAWIO, SYS_PTRACE,
// SYS_BOOT, MAC_ADMIN and the other host-wide ones. NET_RAW stays because ping needs it.
export const CONTAINER_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_RAW",
  "CAP_SYS_CHROOT",
  "CAP_MKNOD",
  "CAP_AUDIT_WRITE",
  "CAP_SETFCAP",
];

// System calls that reach past the container's namespaces. The profile denies them with EPERM
// and allows the rest: a deny list, weaker than Docker's allow list, but it needs no upkeep
// for new system calls that programs in the image use.
export const DENIED_SYSCALLS = [
  "acct",
  "add_key",
  "bpf",
  "delete_module",
  "finit_module",
  "init_module",
  "ioperm",
  "iopl",
  "kexec_file_load",
  "kexec_load",
  "keyctl",
  "lookup_dcookie",
  "move_pages",
  "nfsservctl",
  "open_by_handle_at",
  "perf_event_open",
  "quotactl",
  "request_key",
  "swapoff",
  "swapon",
  "syslog",
  "userfaultfd",
  "vhangup",
];

const MASKED_PATHS = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
];

const READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/**
 * Builds the OCI runtime `config.json` (runtime spec 1.0.2, as runc 1.1 reads it) of one
 * container: pid, mount, network, uts, ipc and cgroup namespaces, cgroup v1 limits from the
 * spec, default capabilities and a seccomp deny list. No user namespace: see docs/containers.md.
 */
export function buildOciConfig(
  spec: ResolvedContainerSpec,
  paths: ContainerPaths,
  names: ContainerHostNames,
) {
  const memoryBytes = spec.memoryMiB * 1024 * 1024;

  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: spec.init,
      env: [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "container=tstack",
      ],
      cwd: "/",
      capabilities: {
        bounding: CONTAINER_CAPABILITIES,
        effective: CONTAINER_CAPABILITIES,
        permitted: CONTAINER_CAPABILITIES,
      },
      // Raising the hard limit above the agent's own fails with EPERM, so this stays low.
      // NOTE: an agent started with a hard limit below 4096 cannot start containers.
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 4096, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: paths.rootfs, readonly: false },
    hostname: spec.hostname,
    mounts: containerMounts(paths),
    linux: {
      namespaces: [
        { type: "pid" },
        { type: "network", path: names.netnsPath },
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
        { type: "cgroup" },
      ],
      cgroupsPath: names.cgroupsPath,
      resources: {
        devices: [{ allow: false, access: "rwm" }],
        memory: { limit: memoryBytes },
        cpu: {
          shares: spec.cpuShares,
          quota: spec.cpuNum * CFS_PERIOD_US,
          period: CFS_PERIOD_US,
        },
        pids: { limit: spec.pidsLimit },
      },
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      seccomp: {
        defaultAction: "SCMP_ACT_ALLOW",
        architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        syscalls: [{ names: DENIED_SYSCALLS, action: "SCMP_ACT_ERRNO", errnoRet: 1 }],
      },
    },
  };
}

function containerMounts(paths: ContainerPaths) {
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
      destination: "/dev/mqueue",
      type: "mqueue",
      source: "mqueue",
      options: ["nosuid", "noexec", "nodev"],
    },
    {
      destination: "/sys",
      type: "sysfs",
      source: "sysfs",
      options: ["nosuid", "noexec", "nodev", "ro"],
    },
    {
      destination: "/sys/fs/cgroup",
      type: "cgroup",
      source: "cgroup",
      options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
    // A bind mount, so the agent never writes through a path of the image, which may be a symlink.
    {
      destination: "/etc/resolv.conf",
      type: "bind",
      source: paths.resolvConf,
      options: ["rbind", "ro", "nosuid", "nodev", "noexec"],
    },
  ];
}
