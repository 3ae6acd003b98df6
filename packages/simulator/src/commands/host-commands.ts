import {
  type Body,
  type Command,
  type CommandContext,
  CommandError,
  field,
  hostOf,
} from "./context.js";

/** Version the simulated agents report on ping. */
export const SIMULATOR_AGENT_VERSION = "0.1.0-simulator";

export const hostCommands: Record<string, Command> = {
  "/host/echo": () => ({}),
  "/host/connect": (context: CommandContext, body: Body) => {
    const host = hostOf(context, "/host/connect");
    const sendCommandUrl = field(body, "sendCommandUrl");

    if (!/^https?:\/\/\S+$/.test(sendCommandUrl)) {
      throw new CommandError(`invalid sendCommandUrl ${sendCommandUrl}: expected an http URL`);
    }

    host.hostUuid = field(body, "hostUuid");
    host.sendCommandUrl = sendCommandUrl;
    return { hostUuid: host.hostUuid };
  },
  "/host/ping": (context) => {
    const host = hostOf(context, "/host/ping");
    return {
      hostUuid: host.hostUuid,
      sendCommandUrl: host.sendCommandUrl,
      version: SIMULATOR_AGENT_VERSION,
      bootId: host.bootId,
    };
  },
  "/host/facts": (context) => {
    const host = hostOf(context, "/host/facts");
    return {
      hostname: `simulator-${host.uuid.slice(0, 8)}`,
      osName: "tstack simulator",
      osId: "simulator",
      osVersion: "1",
      kernelVersion: "simulated",
      cpuModel: "simulated CPU",
      cpuNum: host.cpuNum,
      cpuFlags: [],
      totalMemory: host.memoryBytes,
      qemuVersion: "simulated",
      accel: "kvm",
      accelReason: "simulated host",
    };
  },
  "/host/capacity": (context) => {
    const host = hostOf(context, "/host/capacity");
    let used = 0;

    for (const vm of host.vms.values()) {
      used += vm.memoryMiB * 1024 * 1024;
    }

    return {
      cpuNum: host.cpuNum,
      totalMemory: host.memoryBytes,
      availableMemory: Math.max(0, host.memoryBytes - used),
    };
  },
};
