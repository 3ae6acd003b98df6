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
  "/monitoring/config": (context, body) => {
    const host = hostOf(context, "/monitoring/config");
    host.monitoring = parseMonitoringConfig(body);
    return {};
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

/** Validates `/monitoring/config` as the agent does; primary storages are not simulated. */
function parseMonitoringConfig(body: Body) {
  const intervalSeconds = body.intervalSeconds;
  const pushUrl = body.pushUrl ?? null;

  if (
    !Number.isInteger(intervalSeconds) ||
    Number(intervalSeconds) < 1 ||
    Number(intervalSeconds) > 3600
  ) {
    throw new CommandError(
      `invalid intervalSeconds ${JSON.stringify(intervalSeconds)}: expected an integer from 1 to 3600`,
    );
  }

  if (pushUrl !== null && (typeof pushUrl !== "string" || !/^https?:\/\/\S+$/.test(pushUrl))) {
    throw new CommandError(
      `invalid pushUrl ${JSON.stringify(pushUrl)}: expected an http URL or null`,
    );
  }

  return { intervalSeconds: intervalSeconds as number, pushUrl };
}
