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

/** The `/vm/...` commands; start, stop, reboot, pause, resume and destroy are asynchronous. */
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
};
