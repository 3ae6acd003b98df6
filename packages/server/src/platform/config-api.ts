import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";
import { newUuid, now } from "../core/ids.js";
import { queryHandler } from "../resources/crud.js";
import { defineResource } from "../resources/registry.js";
import type { ApiHandlers } from "../rest/api.js";

/** Declares the core's own global configurations. */
export function defineCoreConfig(core: Core) {
  const define = core.config.define.bind(core.config);
  define({
    category: "identity",
    name: "session.timeout",
    type: "Integer",
    defaultValue: "7200",
    range: [60, 31_536_000],
    description: "Seconds of inactivity after which a session expires",
  });
  define({
    category: "identity",
    name: "session.maxConcurrent",
    type: "Integer",
    defaultValue: "500",
    range: [1, 100_000],
    description: "Maximum open sessions per account, its users included",
  });
  define({
    category: "rest",
    name: "completedApi.expiredPeriod",
    type: "Integer",
    defaultValue: "10800",
    range: [60, 2_592_000],
    description: "Seconds a finished API job stays pollable",
  });
  define({
    category: "eventStream",
    name: "retention",
    type: "Integer",
    defaultValue: "86400",
    range: [60, 2_592_000],
    description: "Seconds events are kept for Last-Event-ID replay",
  });
}

let configInventory: (row: Record<string, unknown>) => Record<string, unknown> = (row) => row;

export function registerConfigResources(core: Core) {
  configInventory = (row) => {
    const definition = core.config.definition(String(row.category), String(row.name));
    return {
      category: row.category,
      name: row.name,
      value: row.value,
      defaultValue: definition?.defaultValue ?? "",
      description: definition?.description ?? "",
      type: definition?.type ?? "String",
    };
  };

  defineResource({
    type: "GlobalConfig",
    table: "globalConfigs",
    key: "name",
    visibility: "public",
    defaultSort: "category",
    fields: { category: "string", name: "string", value: "string", lastOpDate: "date" },
    toInventory: (row) => configInventory(row),
  });
  defineResource({
    type: "ResourceConfig",
    table: "resourceConfigs",
    key: "uuid",
    visibility: "admin",
    fields: {
      uuid: "string",
      resourceUuid: "string",
      resourceType: "string",
      category: "string",
      name: "string",
      value: "string",
      createDate: "date",
      lastOpDate: "date",
    },
    toInventory: (row) => ({ ...row }),
  });
}

function checkValue(core: Core, category: string, name: string, value: string) {
  const error = core.config.validate(category, name, value);

  if (error) {
    throw new ApiError("invalidArgument", error);
  }
}

export const configHandlers: ApiHandlers = {
  queryGlobalConfig: queryHandler("GlobalConfig"),
  updateGlobalConfig: {
    check: async (core, call) =>
      checkValue(core, call.path.category!, call.path.name!, String(call.params.value)),
    async run(core, call) {
      const { category, name } = call.path as { category: string; name: string };
      const value = String(call.params.value);
      const body = await call.commit(async (tx) => {
        await tx
          .updateTable("globalConfigs")
          .set({ value, lastOpDate: now() })
          .where("category", "=", category)
          .where("name", "=", name)
          .execute();
        const row = await tx
          .selectFrom("globalConfigs")
          .selectAll()
          .where("category", "=", category)
          .where("name", "=", name)
          .executeTakeFirstOrThrow();
        return { inventory: configInventory(row) };
      });
      core.config.apply(category, name, value);
      return body;
    },
  },
  resetGlobalConfig: {
    async run(core, call) {
      const definitions = core.config.all();
      await call.commit(async (tx) => {
        for (const definition of definitions) {
          await tx
            .updateTable("globalConfigs")
            .set({ value: definition.defaultValue, lastOpDate: now() })
            .where("category", "=", definition.category)
            .where("name", "=", definition.name)
            .execute();
        }

        return {};
      });

      for (const definition of definitions) {
        core.config.apply(definition.category, definition.name, definition.defaultValue);
      }

      return {};
    },
  },
  queryResourceConfig: queryHandler("ResourceConfig"),
  updateResourceConfig: {
    async check(core, call) {
      const { category, name, resourceUuid } = call.path as Record<string, string>;
      checkValue(core, category!, name!, String(call.params.value));
      const resource = await core.kysely
        .selectFrom("resources")
        .select("uuid")
        .where("uuid", "=", resourceUuid!)
        .executeTakeFirst();

      if (!resource) {
        throw new ApiError("notFound", `resource ${resourceUuid} was not found`);
      }
    },
    run: (_core, call) =>
      call.commit(async (tx) => {
        const { category, name, resourceUuid } = call.path as Record<string, string>;
        const resource = await tx
          .selectFrom("resources")
          .select(["uuid", "resourceType"])
          .where("uuid", "=", resourceUuid!)
          .executeTakeFirstOrThrow();
        const value = String(call.params.value);
        const stamp = now();
        await tx
          .deleteFrom("resourceConfigs")
          .where("resourceUuid", "=", resourceUuid!)
          .where("category", "=", category!)
          .where("name", "=", name!)
          .execute();
        const row = {
          uuid: newUuid(),
          resourceUuid: resource.uuid,
          resourceType: resource.resourceType,
          category: category!,
          name: name!,
          value,
          createDate: stamp,
          lastOpDate: stamp,
        };
        await tx.insertInto("resourceConfigs").values(row).execute();
        return { inventory: row };
      }),
  },
  deleteResourceConfig: {
    async check(core, call) {
      const { category, name } = call.path as Record<string, string>;

      if (!core.config.definition(category!, name!)) {
        throw new ApiError(
          "invalidArgument",
          `global configuration ${category}.${name} does not exist; query /zstack/v1/global-configurations for the list`,
        );
      }
    },
    run: (_core, call) =>
      call.commit(async (tx) => {
        const { category, name, resourceUuid } = call.path as Record<string, string>;
        await tx
          .deleteFrom("resourceConfigs")
          .where("resourceUuid", "=", resourceUuid!)
          .where("category", "=", category!)
          .where("name", "=", name!)
          .execute();
        return {};
      }),
  },
};
