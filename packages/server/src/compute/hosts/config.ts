import type { Core } from "../../core/core.js";

/** Global configurations of hosts, with ZStack's names and defaults where ZStack has them. */
export function defineHostConfig(core: Core) {
  const define = core.config.define.bind(core.config);
  define({
    category: "host",
    name: "ping.interval",
    type: "Integer",
    defaultValue: "60",
    range: [1, 86_400],
    description: "Seconds between pings of each connected host",
  });
  define({
    category: "host",
    name: "ping.maxFailure",
    type: "Integer",
    defaultValue: "3",
    range: [1, 100],
    description: "Failed pings in a row before a host becomes Disconnected",
  });
  define({
    category: "host",
    name: "ping.timeout",
    type: "Integer",
    defaultValue: "10",
    range: [1, 600],
    description: "Seconds a ping may take",
  });
  define({
    category: "host",
    name: "connection.autoReconnectOnError",
    type: "Boolean",
    defaultValue: "true",
    description: "Reconnect Disconnected hosts automatically, with backoff",
  });
  define({
    category: "host",
    name: "agent.port",
    type: "Integer",
    defaultValue: "7070",
    range: [1, 65535],
    description: "TCP port the agent listens on",
  });
  define({
    category: "host",
    name: "agent.dataDir",
    type: "String",
    defaultValue: "/var/lib/tstack-agent",
    description: "Data directory of the agent on each host",
  });
  define({
    category: "host",
    name: "cpu.overProvisioning.ratio",
    type: "Float",
    defaultValue: "10",
    range: [1, 1000],
    description: "vCPUs allocatable per physical CPU",
  });
  define({
    category: "host",
    name: "reservedMemory",
    type: "Long",
    defaultValue: "536870912",
    range: [0, 1024 ** 5],
    description: "Bytes of host memory never given to VMs",
  });
  define({
    category: "host",
    name: "maintenance.policy",
    type: "String",
    defaultValue: "StopVm",
    validValues: ["StopVm", "RejectWithRunningVm"],
    description: "What maintenance does to running VMs until live migration exists",
  });
}
