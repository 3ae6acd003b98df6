import { hostname } from "node:os";
import type { Core } from "../core/core.js";
import { now } from "../core/ids.js";
import { queryHandler } from "../resources/crud.js";
import { defineResource } from "../resources/registry.js";
import type { ApiHandlers } from "../rest/api.js";

defineResource({
  type: "ManagementNode",
  table: "managementNodes",
  key: "uuid",
  visibility: "admin",
  fields: {
    uuid: "string",
    hostName: "string",
    port: "number",
    state: "string",
    version: "string",
    heartBeat: "date",
    joinDate: "date",
  },
  toInventory: (row) => ({ ...row }),
});

const HEARTBEAT_MS = 5000;

/** Registers this management node and keeps its heartbeat fresh until `stop` is called. */
export async function joinManagementNodes(core: Core, port: number, version: string) {
  const stamp = now();
  await core.kysely.deleteFrom("managementNodes").where("uuid", "=", core.nodeUuid).execute();
  await core.kysely
    .insertInto("managementNodes")
    .values({
      uuid: core.nodeUuid,
      hostName: hostname(),
      port,
      state: "Running",
      version,
      heartBeat: stamp,
      joinDate: stamp,
    })
    .execute();

  const timer = setInterval(() => {
    core.kysely
      .updateTable("managementNodes")
      .set({ heartBeat: now() })
      .where("uuid", "=", core.nodeUuid)
      .execute()
      .catch((error) => core.log.warn({ err: error }, "management node heartbeat failed"));
  }, HEARTBEAT_MS);
  timer.unref();

  return async () => {
    clearInterval(timer);
    await core.kysely.deleteFrom("managementNodes").where("uuid", "=", core.nodeUuid).execute();
  };
}

export function nodeHandlers(version: string): ApiHandlers {
  return {
    queryManagementNode: queryHandler("ManagementNode"),
    getVersion: { run: async () => ({ version }) },
  };
}
