import type { Core } from "../core/core.js";
import type { Module } from "../modules.js";
import { queryHandler } from "../resources/crud.js";
import { capacityHandlers } from "./capacity.js";
import { defineNetworkConfig } from "./config.js";
import { ipRangeHandlers } from "./ip-ranges.js";
import { l2Handlers } from "./l2.js";
import { l3Handlers } from "./l3.js";
import { FlatNicService } from "./nic-service.js";
import "./resources.js";
import { forgetHostVteps, recordHostVteps } from "./vteps.js";

/** Networking: L2 and L3 networks, IP ranges and addresses, network services and VM NICs. */
export function networkModule(): Module {
  let core: Core | undefined;
  const unsubscribes: (() => void)[] = [];

  return {
    handlers: {
      ...l2Handlers,
      ...l3Handlers,
      ...ipRangeHandlers,
      ...capacityHandlers,
      queryVmNic: queryHandler("VmNic"),
    },
    register(registered: Core) {
      core = registered;
      defineNetworkConfig(registered);
      registered.services.nics = new FlatNicService(registered);
    },
    start() {
      const bus = core!.bus;
      unsubscribes.push(
        bus.subscribe("host.connected", async (message) => {
          const { hostUuid } = message.body as { hostUuid: string };
          await recordHostVteps(core!, hostUuid).catch((error) =>
            core!.log.warn({ err: error, hostUuid }, "recording the VTEPs of a host failed"),
          );
        }),
        bus.subscribe("host.deleted", async (message) => {
          const { hostUuid } = message.body as { hostUuid: string };
          await forgetHostVteps(core!, hostUuid).catch((error) =>
            core!.log.warn({ err: error, hostUuid }, "removing the VTEPs of a host failed"),
          );
        }),
      );
    },
    stop() {
      for (const unsubscribe of unsubscribes.splice(0)) {
        unsubscribe();
      }
    },
  };
}
