import { sql } from "kysely";
import type { Core } from "../core/core.js";
import { now } from "../core/ids.js";
import type { HostPushRetries } from "./security-groups-retries.js";

const retriesByCore = new WeakMap<Core, HostPushRetries>();

/** Makes `retries` the background retries of this node; see security-groups-sync.ts. */
export function setPushRetries(core: Core, retries: HostPushRetries | undefined) {
  if (retries) {
    retriesByCore.set(core, retries);
  } else {
    retriesByCore.delete(core);
  }
}

/** Returns the background retries of this node, if the security group module started them. */
export function pushRetriesOf(core: Core) {
  return retriesByCore.get(core);
}

/** Returns which of these hosts have a failed security-group push not yet retried successfully. */
export async function failedHosts(core: Core, hostUuids: string[]) {
  if (hostUuids.length === 0) {
    return new Set<string>();
  }

  const rows = await core.kysely
    .selectFrom("securityGroupFailureHosts")
    .select("hostUuid")
    .where("hostUuid", "in", hostUuids)
    .execute();
  return new Set(rows.map((row) => row.hostUuid));
}

/**
 * Marks a host whose security-group push failed and arms its background retry. A host deleted in
 * the meantime is skipped, so no retry is armed for it.
 */
export async function recordPushFailure(core: Core, hostUuid: string, error: unknown) {
  const message = error instanceof Error ? error.message : String(error);
  const host = await core.kysely
    .selectFrom("hosts")
    .select("uuid")
    .where("uuid", "=", hostUuid)
    .executeTakeFirst();

  if (!host) {
    return;
  }

  const stamp = now();
  await core.kysely
    .insertInto("securityGroupFailureHosts")
    .values({ hostUuid, attempts: 1, lastError: message, createDate: stamp, lastOpDate: stamp })
    .onConflict((conflict) =>
      conflict.column("hostUuid").doUpdateSet({
        attempts: sql`${sql.ref("securityGroupFailureHosts.attempts")} + 1`,
        lastError: message,
        lastOpDate: stamp,
      }),
    )
    .execute();
  core.log.warn({ err: error, hostUuid }, "security group push to host failed; marked for retry");
  retriesByCore.get(core)?.failed(hostUuid);
}

/** Clears the failure mark of a host after its full rule set was pushed. */
export async function clearPushFailure(core: Core, hostUuid: string) {
  const result = await core.kysely
    .deleteFrom("securityGroupFailureHosts")
    .where("hostUuid", "=", hostUuid)
    .executeTakeFirst();

  if (Number(result.numDeletedRows) > 0) {
    core.log.info({ hostUuid }, "security group rules pushed to host again; failure mark cleared");
  }
}
