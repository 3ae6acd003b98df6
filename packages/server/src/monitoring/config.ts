import type { Core } from "../core/core.js";

/** Global configuration category of monitoring. */
export const CATEGORY = "monitoring";

/** Global configurations of metric collection, storage and alarms. */
export function defineMonitoringConfig(core: Core) {
  const define = core.config.define.bind(core.config);
  define({
    category: CATEGORY,
    name: "interval",
    type: "Integer",
    defaultValue: "10",
    range: [1, 3600],
    description: "Seconds between metric collections on each host; pushed to the agents",
  });
  define({
    category: CATEGORY,
    name: "retention",
    type: "Integer",
    defaultValue: "24",
    range: [1, 24 * 90],
    description: "Hours of metric history kept",
  });
  define({
    category: CATEGORY,
    name: "rawRetention",
    type: "Integer",
    defaultValue: "60",
    range: [1, 24 * 60],
    description: "Minutes raw samples are kept before they are rolled up into steps",
  });
  define({
    category: CATEGORY,
    name: "rollupStep",
    type: "Integer",
    defaultValue: "300",
    range: [60, 86_400],
    description: "Seconds each rolled-up step of older metric history spans",
  });
  define({
    category: CATEGORY,
    name: "alarm.evaluationInterval",
    type: "Integer",
    defaultValue: "10",
    range: [1, 3600],
    description: "Seconds between evaluations of the enabled alarms",
  });
}

/** Reads the monitoring settings that are in force now. */
export function monitoringSettings(core: Core) {
  const number = (name: string) => core.config.number(CATEGORY, name);

  return {
    intervalSeconds: number("interval"),
    retentionMs: number("retention") * 3_600_000,
    rawRetentionMs: number("rawRetention") * 60_000,
    rollupStepMs: number("rollupStep") * 1000,
    evaluationIntervalMs: number("alarm.evaluationInterval") * 1000,
  };
}
