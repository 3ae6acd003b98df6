import { ApiError } from "@tstack/api";
import { checkQuota, defineQuota } from "../identity/quotas.js";
import {
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
  type: "WebHook",
  table: "webHooks",
  key: "uuid",
  visibility: "owner",
  taggable: true,
  fields: {
    ...commonFields,
    url: "string",
    type: "string",
    opaque: "string",
    accountUuid: "string",
  },
  // The secret never leaves the server: subscribers only need it to check signatures.
  toInventory: (row) =>
    commonInventory(row, {
      url: row.url,
      type: row.type,
      opaque: row.opaque ?? null,
    }),
});

// Every event fans out to every matching subscription, so a tenant's subscriptions are bounded.
defineQuota({
  name: "webhook.num",
  defaultValue: 20,
  description: "Maximum webhook subscriptions per account",
  async usage(db, accountUuid) {
    const row = await db
      .selectFrom("webHooks")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("accountUuid", "=", accountUuid)
      .executeTakeFirst();
    return Number(row?.count ?? 0);
  },
});

export const webHookHandlers: ApiHandlers = {
  queryWebHook: queryHandler("WebHook"),
  updateWebHook: updateHandler("WebHook", ["name", "description", "url", "opaque"]),
  deleteWebHook: simpleDeleteHandler("WebHook"),
  createWebHook: {
    async check(_core, call) {
      const opaque = call.params.opaque as string | undefined;

      if (opaque !== undefined && !/^\/[A-Za-z0-9_*/-]*$/.test(opaque)) {
        throw new ApiError(
          "invalidArgument",
          `params.opaque: invalid event path glob '${opaque}'; expected a path such as /vm/** or /zone/state/change`,
        );
      }
    },
    run: (core, call) =>
      call.commit(async (tx) => {
        await checkQuota(
          tx,
          { uuid: call.caller.accountUuid, isAdmin: call.caller.isAdmin },
          "webhook.num",
          1,
        );
        const { name, description, url, type, opaque, secret } = call.params;
        const row = await insertResource(
          tx,
          core,
          "WebHook",
          {
            name,
            description: description ?? null,
            url,
            type,
            opaque: opaque ?? "/**",
            secret: secret ?? null,
          },
          call,
        );
        return { inventory: resourceDefinition("WebHook").toInventory(row) };
      }),
  },
};
