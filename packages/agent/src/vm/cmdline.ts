import { dashedUuid } from "../validate.js";
import { cdromArgs } from "./cdrom.js";
import type { VmPaths } from "./paths.js";
import type { ResolvedVmSpec } from "./spec.js";
import type { Accelerator } from "./types.js";

// VNC displays 0..1000 (TCP 5900..6900); QEMU takes the first free one. The agent reads the
// chosen port back with query-vnc.
const VNC_DISPLAYS = "127.0.0.1:0,to=1000,password=on";

/**
 * Builds the QEMU argument list of one VM. The VM starts paused (`-S`) so the agent can connect
 * QMP and set the VNC password before the guest runs.
 */
export function buildQemuArgs(spec: ResolvedVmSpec, paths: VmPaths, accel: Accelerator) {
  const args = [
    ["-name", `${spec.vmUuid},debug-threads=on`],
    ["-uuid", dashedUuid(spec.vmUuid)],
    ["-accel", accel],
    ["-m", String(spec.memoryMiB)],
    ["-smp", String(spec.cpuNum)],
    ["-nodefaults", "-no-user-config", "-S", "-no-shutdown"],
    ["-display", "none", "-device", "VGA", "-vnc", VNC_DISPLAYS],
    ["-serial", `file:${paths.consoleLog}`],
    ["-qmp", `unix:${paths.qmpSocket},server=on,wait=off`],
    ["-pidfile", paths.pidFile],
    // Lets a guest with a pvpanic driver raise GUEST_PANICKED instead of hanging unseen.
    ["-device", "pvpanic"],
    ...spec.disks.map((disk, index) => diskArgs(disk.path, disk.format ?? "qcow2", index)),
    cdromArgs(spec.cdrom),
    ...spec.nics.map((nic, index) => nicArgs(nic.tapName, nic.mac, index)),
  ];

  return args.flat();
}

function diskArgs(path: string, format: string, index: number) {
  return [
    "-drive",
    `file=${path},format=${format},if=none,id=disk${index},discard=unmap`,
    "-device",
    `virtio-blk-pci,drive=disk${index},bootindex=${index}`,
  ];
}

function nicArgs(tapName: string, mac: string, index: number) {
  return [
    "-netdev",
    `tap,id=net${index},ifname=${tapName},script=no,downscript=no`,
    "-device",
    `virtio-net-pci,netdev=net${index},mac=${mac}`,
  ];
}
