import type { Core } from "../../core/core.js";

export function defineVmConfig(core: Core) {
  const define = core.config.define.bind(core.config);
  define({
    category: "vm",
    name: "deletionPolicy",
    type: "String",
    defaultValue: "Delay",
    validValues: ["Direct", "Delay", "Never"],
    description:
      "Direct expunges a destroyed VM at once; Delay after vm.expungePeriod; Never keeps it until expunged by hand",
  });
  define({
    category: "vm",
    name: "expungePeriod",
    type: "Integer",
    defaultValue: "604800",
    range: [0, 31_536_000],
    description: "Seconds a destroyed VM stays recoverable under the Delay policy",
  });
  define({
    category: "vm",
    name: "stop.gracefulTimeout",
    type: "Integer",
    defaultValue: "60",
    range: [1, 3600],
    description:
      "Seconds a guest gets to power off after the ACPI button before it is stopped by force",
  });
  define({
    category: "vm",
    name: "start.timeout",
    type: "Integer",
    defaultValue: "300",
    range: [10, 86_400],
    description: "Seconds the agent may take to start a VM",
  });
  define({
    category: "vm",
    name: "ip.releasePolicy",
    type: "String",
    defaultValue: "OnExpunge",
    validValues: ["OnExpunge", "OnDestroy"],
    description: "When a VM's IP addresses go back to their ranges",
  });
}
