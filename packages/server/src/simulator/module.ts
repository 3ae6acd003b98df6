import type { Core } from "../core/core.js";
import type { Module } from "../modules.js";
import { faultHandlers } from "./faults-api.js";
import { addSimulatorHost } from "./hosts-api.js";
import { closeSimulatorLink } from "./link.js";
import { addSimulatorBackupStorage, addSimulatorPrimaryStorage } from "./storage-api.js";

/** Simulator hosts and storage, and fault injection into the simulator that serves them. */
export function simulatorModule(): Module {
  let core: Core | undefined;

  return {
    handlers: {
      addSimulatorHost: addSimulatorHost(),
      addSimulatorPrimaryStorage: addSimulatorPrimaryStorage(),
      addSimulatorBackupStorage: addSimulatorBackupStorage(),
      ...faultHandlers(),
    },
    register(registered) {
      core = registered;
    },
    async stop() {
      if (core) {
        await closeSimulatorLink(core);
      }
    },
  };
}
