import { ApiError } from "@tstack/api";
import { type FaultSpec, FaultSpecError, SimulatorAdminError } from "@tstack/simulator";
import type { Core } from "../core/core.js";
import type { ApiHandlers } from "../rest/api.js";
import { simulatorLink } from "./link.js";

/** Checks that a fault's resource is a host, primary storage or backup storage of this cloud. */
async function checkResource(core: Core, resourceUuid: unknown) {
  if (resourceUuid === undefined) {
    return;
  }

  const uuid = String(resourceUuid);
  const found = await Promise.all(
    (["hosts", "primaryStorages", "backupStorages"] as const).map((table) =>
      core.kysely.selectFrom(table).select("uuid").where("uuid", "=", uuid).executeTakeFirst(),
    ),
  );

  if (!found.some(Boolean)) {
    throw new ApiError(
      "invalidArgument",
      `params.resourceUuid: no host, primary storage or backup storage has uuid ${uuid}; leave it out to apply the fault to all`,
    );
  }
}

/** Turns the simulator's rejection of a fault spec into a 400 naming the reason. */
function specError(error: unknown) {
  const invalid =
    error instanceof FaultSpecError ||
    (error instanceof SimulatorAdminError && error.status === 400);
  return invalid ? new ApiError("invalidArgument", `params: ${(error as Error).message}`) : error;
}

/** Fault injection through the simulator's admin channel; every route is admin only. */
export function faultHandlers(): ApiHandlers {
  return {
    createSimulatorFault: {
      check: (core, call) => checkResource(core, call.params.resourceUuid),
      async run(core, call) {
        const { control } = await simulatorLink(core);

        try {
          const inventory = await control.createFault(call.params as unknown as FaultSpec);
          core.log.info({ fault: inventory }, "injected a simulator fault");
          return { inventory };
        } catch (error) {
          throw specError(error);
        }
      },
    },
    querySimulatorFault: {
      async run(core) {
        const { control } = await simulatorLink(core);
        return { inventories: await control.listFaults() };
      },
    },
    deleteSimulatorFault: {
      async run(core, call) {
        const { control } = await simulatorLink(core);
        const removed = await control.deleteFault(call.path.uuid!);

        if (!removed) {
          throw new ApiError(
            "notFound",
            `simulator fault ${call.path.uuid} was not found; it may have used up its count`,
          );
        }

        return {};
      },
    },
    deleteAllSimulatorFaults: {
      async run(core) {
        const { control } = await simulatorLink(core);
        const removed = await control.clearFaults();
        core.log.info({ removed }, "deleted every simulator fault");
        return {};
      },
    },
  };
}
