import type { Core } from "../core/core.js";
import type { Module } from "../modules.js";
import { securityGroupHandlers } from "./security-groups-api.js";
import "./security-groups-resources.js";
import { startSecurityGroupSync } from "./security-groups-sync.js";

/**
 * Security groups: allow rules per group, pushed to the hosts of the member VM NICs, with
 * background retries of failed pushes.
 */
export function securityGroupModule(): Module {
  let core: Core | undefined;
  let started: Promise<(() => Promise<void>) | undefined> | undefined;

  return {
    handlers: securityGroupHandlers,
    register(registered: Core) {
      core = registered;
    },
    start() {
      const log = core!.log;
      started = startSecurityGroupSync(core!).catch((error: unknown) => {
        log.error({ err: error }, "starting security group push retries failed");
        return undefined;
      });
    },
    async stop() {
      const stop = await started;
      await stop?.();
    },
  };
}
