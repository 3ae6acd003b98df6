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

/** Networking: L2 and L3 networks, IP ranges and addresses, network services and VM NICs. */
export function networkModule(): Module {
  return {
    handlers: {
      ...l2Handlers,
      ...l3Handlers,
      ...ipRangeHandlers,
      ...capacityHandlers,
      queryVmNic: queryHandler("VmNic"),
    },
    register(core: Core) {
      defineNetworkConfig(core);
      core.services.nics = new FlatNicService(core);
    },
  };
}
