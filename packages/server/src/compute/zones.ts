import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";
import {
  changeStateHandler,
  deleteMode,
  deleteResourceRow,
  insertResource,
  loadResource,
  queryHandler,
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
  type: "Zone",
  table: "zones",
  key: "uuid",
  visibility: "admin",
  taggable: true,
  fields: { ...commonFields, state: "string", type: "string" },
  relations: { cluster: { resource: "Cluster", local: "uuid", foreign: "zoneUuid" } },
  toInventory: (row) => commonInventory(row, { state: row.state, type: row.type }),
});

interface DeleteZoneData {
  zoneUuid: string;
  accountUuid: string;
  clusterUuids: string[];
}

/** Registers the Enforcing zone deletion: clusters first, then the zone; each step can resume. */
export function registerZoneWorkflows(core: Core) {
  core.workflows.register<DeleteZoneData>({
    name: "delete-zone",
    steps: [
      {
        name: "delete-clusters",
        resumable: true,
        async run(data) {
          for (const clusterUuid of data.clusterUuids) {
            await core.transact(async (tx) => {
              const cluster = await tx
                .selectFrom("clusters")
                .selectAll()
                .where("uuid", "=", clusterUuid)
                .executeTakeFirst();

              if (cluster) {
                await deleteResourceRow(tx, "Cluster", cluster);
              }
            });
          }
        },
      },
      {
        name: "delete-zone",
        resumable: true,
        async run(data) {
          await core.transact(async (tx) => {
            const zone = await tx
              .selectFrom("zones")
              .selectAll()
              .where("uuid", "=", data.zoneUuid)
              .executeTakeFirst();

            if (zone) {
              await deleteResourceRow(tx, "Zone", zone);
            }
          });
        },
      },
    ],
    result: async () => ({}),
  });
}

/**
 * Rejects deleting a zone that still has hosts, L2 networks or primary storage: the Enforcing
 * mode cascades to empty clusters only, and those resources need their own deletion first.
 */
async function rejectZoneDependents(core: Core, zoneUuid: string) {
  const found: string[] = [];

  for (const [table, label] of [
    ["hosts", "host"],
    ["l2Networks", "L2 network"],
    ["primaryStorages", "primary storage"],
  ] as const) {
    const rows = await core.kysely
      .selectFrom(table)
      .select("uuid")
      .where("zoneUuid", "=", zoneUuid)
      .limit(5)
      .execute();
    found.push(...rows.map((row) => `${label} ${row.uuid}`));
  }

  if (found.length > 0) {
    throw new ApiError(
      "operationFailed",
      `zone ${zoneUuid} still has ${found.join(", ")}; delete them first, then the zone`,
    );
  }
}

export const zoneHandlers: ApiHandlers = {
  queryZone: queryHandler("Zone"),
  updateZone: updateHandler("Zone"),
  changeZoneState: changeStateHandler("Zone"),
  createZone: {
    run: (core, call) =>
      call.commit(async (tx) => {
        const row = await insertResource(
          tx,
          core,
          "Zone",
          {
            name: call.params.name,
            description: call.params.description ?? null,
            state: "Enabled",
            type: "zstack",
          },
          call,
        );
        return { inventory: resourceDefinition("Zone").toInventory(row) };
      }),
  },
  deleteZone: {
    async check(core, call) {
      deleteMode(call);
      await loadResource(core.kysely, "Zone", call.path.uuid!, call.caller);
    },
    async run(core, call) {
      const zone = await loadResource(core.kysely, "Zone", call.path.uuid!, call.caller);
      const clusters = await core.kysely
        .selectFrom("clusters")
        .select("uuid")
        .where("zoneUuid", "=", call.path.uuid!)
        .orderBy("createDate")
        .execute();

      if (clusters.length > 0 && deleteMode(call) === "Permissive") {
        const names = clusters
          .slice(0, 10)
          .map((cluster) => cluster.uuid)
          .join(", ");
        throw new ApiError(
          "operationFailed",
          `zone ${call.path.uuid} still has ${clusters.length} cluster(s) (${names}); delete them first or use deleteMode=Enforcing to delete them with the zone`,
        );
      }

      await rejectZoneDependents(core, call.path.uuid!);
      const data = {
        zoneUuid: call.path.uuid!,
        accountUuid: String(zone.accountUuid),
        clusterUuids: clusters.map((cluster) => cluster.uuid),
      };
      return core.workflows.run("delete-zone", data, {
        jobUuid: call.jobUuid,
        signal: call.signal,
        onProgress: (done, total, step) =>
          void call.progress(Math.round((done / total) * 100), step),
      });
    },
  },
};
