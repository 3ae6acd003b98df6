import type { Core } from "../core/core.js";
import type { Module } from "../modules.js";
import { faultHandlers } from "./faults-api.js";
import { addSimulatorHost } from "./hosts-api.js";
import { closeSimulatorLink } from "./link.js";
import {
  addSimulatorBackupStorage,
  addSimulatorPrimaryStorage,
  forgetSimulatorStorage,
} from "./storage-api.js";

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

      // Storage is deleted by the generic storage handlers, so the simulator side follows their
      // deletion events.
      for (const topic of ["event/primaryStorage/delete", "event/backupStorage/delete"]) {
        registered.bus.subscribe(topic, async (message) => {
          const uuid = (message.body as { resourceUuid?: string }).resourceUuid;

          if (uuid) {
            await forgetSimulatorStorage(registered, uuid);
          }
        });
      }
    },
    async stop() {
      if (core) {
        await closeSimulatorLink(core);
      }
    },
  };
}
