import { posix } from "node:path";
import { ApiError } from "@tstack/api";
import type { Executor } from "../core/events.js";

/** Rejects a storage directory that is not a normalized absolute path below `/`. */
export function checkStorageDirectory(field: string, value: unknown) {
  const path = String(value);
  const valid = posix.isAbsolute(path) && posix.normalize(path) === path && path !== "/";

  if (!valid || path.endsWith("/")) {
    throw new ApiError(
      "invalidArgument",
      `${field}: '${path}' is not a normalized absolute directory path; give one such as /var/lib/tstack/storage`,
    );
  }

  return path;
}

/** Loads a connected host by uuid or fails with what to do. */
export async function connectedHost(db: Executor, hostUuid: string) {
  const host = await db
    .selectFrom("hosts")
    .select(["uuid", "status", "state", "clusterUuid", "managementIp"])
    .where("uuid", "=", hostUuid)
    .executeTakeFirst();

  if (!host) {
    throw new ApiError("notFound", `host ${hostUuid} was not found`);
  }

  if (host.status !== "Connected") {
    throw new ApiError(
      "invalidState",
      `host ${hostUuid} is ${host.status}; reconnect it with reconnectHost first`,
    );
  }

  return host;
}

/** Reads a list-valued query parameter. */
export function queryList(value: string | string[] | undefined) {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}
