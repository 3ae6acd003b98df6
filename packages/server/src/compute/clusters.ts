import { ApiError } from "@tstack/api";
import {
  changeStateHandler,
  insertResource,
  queryHandler,
  simpleDeleteHandler,
  updateHandler,
} from "../resources/crud.js";
import {
  commonFields,
  commonInventory,
  defineResource,
  resourceDefinition,
} from "../resources/registry.js";
import type { ApiHandlers } from "../rest/api.js";

defineResource({
  type: "Cluster",
  table: "clusters",
  key: "uuid",
  visibility: "admin",
  taggable: true,
  fields: {
    ...commonFields,
    zoneUuid: "string",
    state: "string",
    hypervisorType: "string",
    type: "string",
  },
  relations: { zone: { resource: "Zone", local: "zoneUuid", foreign: "uuid" } },
  toInventory: (row) =>
    commonInventory(row, {
      zoneUuid: row.zoneUuid,
      state: row.state,
      hypervisorType: row.hypervisorType,
      type: row.type,
    }),
});

export const clusterHandlers: ApiHandlers = {
  queryCluster: queryHandler("Cluster"),
  updateCluster: updateHandler("Cluster"),
  changeClusterState: changeStateHandler("Cluster"),
  deleteCluster: simpleDeleteHandler("Cluster", async (tx, row) => {
    const hosts = await tx
      .selectFrom("hosts")
      .select("uuid")
      .where("clusterUuid", "=", String(row.uuid))
      .limit(5)
      .execute();

    if (hosts.length > 0) {
      throw new ApiError(
        "operationFailed",
        `cluster ${String(row.uuid)} still has host(s) ${hosts.map((host) => host.uuid).join(", ")}; delete them first`,
      );
    }
  }),
  createCluster: {
    async check(core, call) {
      const zone = await core.kysely
        .selectFrom("zones")
        .select("uuid")
        .where("uuid", "=", String(call.params.zoneUuid))
        .executeTakeFirst();

      if (!zone) {
        throw new ApiError(
          "invalidArgument",
          `params.zoneUuid: zone ${String(call.params.zoneUuid)} was not found; create the zone first or pass an existing zone uuid`,
        );
      }
    },
    run: (core, call) =>
      call.commit(async (tx) => {
        const zone = await tx
          .selectFrom("zones")
          .select("uuid")
          .where("uuid", "=", String(call.params.zoneUuid))
          .executeTakeFirst();

        if (!zone) {
          throw new ApiError(
            "notFound",
            `zone ${String(call.params.zoneUuid)} was deleted before the cluster could be created`,
          );
        }

        const row = await insertResource(
          tx,
          core,
          "Cluster",
          {
            name: call.params.name,
            description: call.params.description ?? null,
            zoneUuid: call.params.zoneUuid,
            state: "Enabled",
            hypervisorType: call.params.hypervisorType,
            type: "zstack",
          },
          call,
        );
        return { inventory: resourceDefinition("Cluster").toInventory(row) };
      }),
  },
};
