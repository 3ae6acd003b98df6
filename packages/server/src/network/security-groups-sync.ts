import type { Core } from "../core/core.js";
import { clearPushFailure, recordPushFailure, setPushRetries } from "./security-groups-failures.js";
import { pushHostRuleSet, runHostPush } from "./security-groups-push.js";
import {
  DEFAULT_RETRY_OPTIONS,
  HostPushRetries,
  type RetryOptions,
  type RetryOutcome,
} from "./security-groups-retries.js";

/**
 * Pushes a host's full rule set and clears its failure mark, or marks it again on failure. A
 * deleted host is skipped, and so is a host that is not Connected, because its reconnect pushes.
 */
export function resyncHost(core: Core, hostUuid: string): Promise<RetryOutcome> {
  return runHostPush(core, hostUuid, async () => {
    const host = await core.kysely
      .selectFrom("hosts")
      .select("status")
      .where("uuid", "=", hostUuid)
      .executeTakeFirst();

    if (host?.status !== "Connected") {
      return "skipped";
    }

    try {
      await pushHostRuleSet(core, hostUuid);
    } catch (error) {
      // Marking arms no second retry: the running one arms the next itself on "failed".
      await recordPushFailure(core, hostUuid, error);
      return "failed";
    }

    await clearPushFailure(core, hostUuid);
    return "pushed";
  });
}

/**
 * Starts the background security-group retries: arms one for each host marked in the database,
 * pushes each host's rules again when it connects, and drops the retry of a deleted host.
 * Returns the stop function, which waits for a running retry.
 */
export async function startSecurityGroupSync(
  core: Core,
  options: RetryOptions = DEFAULT_RETRY_OPTIONS,
) {
  const retries = new HostPushRetries((hostUuid) => resyncHost(core, hostUuid), core.log, options);
  setPushRetries(core, retries);

  const unsubscribes = [
    core.bus.subscribe("host.connected", async (message) => {
      const { hostUuid } = message.body as { hostUuid: string };
      await resyncHost(core, hostUuid).catch((error: unknown) =>
        core.log.warn(
          { err: error, hostUuid },
          "pushing security groups to a connected host failed",
        ),
      );
    }),
    core.bus.subscribe("host.deleted", async (message) => {
      const { hostUuid } = message.body as { hostUuid: string };
      retries.cancel(hostUuid);
    }),
  ];

  const marked = await core.kysely
    .selectFrom("securityGroupFailureHosts")
    .select("hostUuid")
    .execute();

  for (const { hostUuid } of marked) {
    retries.failed(hostUuid);
  }

  return async () => {
    for (const unsubscribe of unsubscribes) {
      unsubscribe();
    }

    setPushRetries(core, undefined);
    await retries.stop();
  };
}
