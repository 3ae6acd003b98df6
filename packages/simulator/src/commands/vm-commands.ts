import type { SimHost, SimVm } from "../state.js";
import { type Body, type Command, CommandError, field, hostOf } from "./context.js";

const FIRST_VNC_PORT = 5900;

function vmOf(host: SimHost, body: Body, path: string): SimVm {
  const vmUuid = field(body, "vmUuid");
  const vm = host.vms.get(vmUuid);

  if (!vm) {
    throw new CommandError(`${path}: VM ${vmUuid} is not running on host ${host.uuid}`);
  }

  return vm;
}

function vmReply(vm: SimVm | { vmUuid: string; state: string }) {
  return { vmUuid: vm.vmUuid, state: vm.state, vncPort: "vncPort" in vm ? vm.vncPort : undefined };
}

function freeVncPort(host: SimHost) {
  const used = new Set([...host.vms.values()].map((vm) => vm.vncPort));
  let port = FIRST_VNC_PORT;

  while (used.has(port)) {
    port++;
  }

  return port;
}

function startVm(host: SimHost, body: Body) {
  const vmUuid = field(body, "vmUuid");
  const existing = host.vms.get(vmUuid);

  if (existing) {
    return vmReply(existing);
  }

  const disks = Array.isArray(body.disks) ? (body.disks as { path?: unknown }[]) : [];
  const nics = Array.isArray(body.nics)
    ? (body.nics as { mac?: unknown; tapName?: unknown }[])
    : [];
  const vm: SimVm = {
    vmUuid,
    state: "Running",
    cpuNum: Number(body.cpuNum ?? 1),
    memoryMiB: Number(body.memoryMiB ?? 0),
    disks: disks.map((disk) => String(disk.path ?? "")),
    macs: nics.map((nic) => String(nic.mac ?? "")),
    tapNames: nics.map((nic) => String(nic.tapName ?? "")),
    vncPort: freeVncPort(host),
  };
  host.vms.set(vmUuid, vm);
  return vmReply(vm);
}

/** Plugs a disk into a running VM. Plugging a path the VM already has changes nothing. */
function attachVolume(host: SimHost, body: Body) {
  const vm = vmOf(host, body, "/vm/volume/attach");
  const volumeUuid = field(body, "volumeUuid");
  const path = field(body, "path");

  if (!vm.disks.includes(path)) {
    vm.disks.push(path);
  }

  return { vmUuid: vm.vmUuid, volumeUuid };
}

/** Unplugs a disk by path. Like the agent, it replies detached: false when no disk uses it. */
function detachVolume(host: SimHost, body: Body) {
  const vm = vmOf(host, body, "/vm/volume/detach");
  const path = field(body, "path");
  const index = vm.disks.indexOf(path);

  if (index >= 0) {
    vm.disks.splice(index, 1);
  }

  return { vmUuid: vm.vmUuid, detached: index >= 0 };
}

/**
 * The `/vm/...` commands. Start, stop, reboot, pause, resume, destroy and the disk hotplug
 * commands are asynchronous.
 */
export const vmCommands: Record<string, Command> = {
  "/vm/vmsync": (context) => {
    const host = hostOf(context, "/vm/vmsync");
    const states: Record<string, string> = {};

    for (const vm of host.vms.values()) {
      states[vm.vmUuid] = vm.state;
    }

    return { states };
  },
  "/vm/console": (context, body) => {
    const vm = vmOf(hostOf(context, "/vm/console"), body, "/vm/console");
    return { vmUuid: vm.vmUuid, console: `simulated console of VM ${vm.vmUuid}\n` };
  },
  "/vm/start": (context, body) => startVm(hostOf(context, "/vm/start"), body),
  "/vm/stop": (context, body) => {
    const host = hostOf(context, "/vm/stop");
    const vmUuid = field(body, "vmUuid");
    host.vms.delete(vmUuid);
    return { vmUuid, state: "Stopped" };
  },
  "/vm/reboot": (context, body) => {
    const vm = vmOf(hostOf(context, "/vm/reboot"), body, "/vm/reboot");
    vm.state = "Running";
    return vmReply(vm);
  },
  "/vm/pause": (context, body) => {
    const vm = vmOf(hostOf(context, "/vm/pause"), body, "/vm/pause");
    vm.state = "Paused";
    return vmReply(vm);
  },
  "/vm/resume": (context, body) => {
    const vm = vmOf(hostOf(context, "/vm/resume"), body, "/vm/resume");
    vm.state = "Running";
    return vmReply(vm);
  },
  "/vm/destroy": (context, body) => {
    const host = hostOf(context, "/vm/destroy");
    const vmUuid = field(body, "vmUuid");
    host.vms.delete(vmUuid);
    return { vmUuid };
  },
  "/vm/volume/attach": (context, body) => attachVolume(hostOf(context, "/vm/volume/attach"), body),
  "/vm/volume/detach": (context, body) => detachVolume(hostOf(context, "/vm/volume/detach"), body),
};
