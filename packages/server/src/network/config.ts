import type { Core } from "../core/core.js";

export const IP_STRATEGIES = ["FirstAvailableIpAllocatorStrategy", "RandomIpAllocatorStrategy"];

/** The system tag of an L3 network that overrides the global IP allocation strategy. */
export const IP_STRATEGY_TAG = "ipAllocationStrategy::";

/** Global configurations of networking. */
export function defineNetworkConfig(core: Core) {
  core.config.define({
    category: "l3Network",
    name: "ipAllocationStrategy",
    type: "String",
    defaultValue: "FirstAvailableIpAllocatorStrategy",
    validValues: IP_STRATEGIES,
    description:
      "How new VM NICs get addresses: the lowest free one, or a random free one; an L3 network's ipAllocationStrategy:: system tag overrides it",
  });
}
