import { ApiError } from "@tstack/api";
import type { Executor } from "../core/events.js";
import { newUuid, now } from "../core/ids.js";
import { queryHandler } from "../resources/crud.js";
import { defineResource, findResourceDefinition } from "../resources/registry.js";
import { systemTagError } from "../resources/tags.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../rest/api.js";

const tagFields = {
  uuid: "string",
  resourceUuid: "string",
  resourceType: "string",
  tag: "string",
  type: "string",
  inherent: "boolean",
  createDate: "date",
  lastOpDate: "date",
} as const;
const tagInventory = (row: Record<string, unknown>) => ({
  uuid: row.uuid,
  resourceUuid: row.resourceUuid,
  resourceType: row.resourceType,
  tag: row.tag,
  type: row.type,
  inherent: Boolean(row.inherent),
  createDate: row.createDate,
  lastOpDate: row.lastOpDate,
});

defineResource({
  type: "SystemTag",
  table: "tags",
  key: "uuid",
  visibility: "owner",
  fields: tagFields,
  toInventory: tagInventory,
});
defineResource({
  type: "UserTag",
  table: "tags",
  key: "uuid",
  visibility: "owner",
  fields: tagFields,
  toInventory: tagInventory,
});

/**
 * Checks that the tagged resource exists, is of the named type and may be changed by the caller.
 * Inside a commit, `db` must be its transaction: on SQLite a read on another connection waits
 * for the transaction's write lock, so the job would never end.
 */
async function taggedResource(db: Executor, call: ApiCall) {
  const resourceUuid = String(call.params.resourceUuid);
  const resource = await db
    .selectFrom("resources")
    .selectAll()
    .where("uuid", "=", resourceUuid)
    .executeTakeFirst();

  if (!resource) {
    throw new ApiError(
      "invalidArgument",
      `params.resourceUuid: resource ${resourceUuid} was not found`,
    );
  }

  const type = String(call.params.resourceType).replace(/VO$/, "");

  if (resource.resourceType !== type) {
    throw new ApiError(
      "invalidArgument",
      `params.resourceType: resource ${resourceUuid} is a ${resource.resourceType}, not a ${String(call.params.resourceType)}`,
    );
  }

  if (!findResourceDefinition(type)?.taggable) {
    throw new ApiError("invalidArgument", `${type} resources cannot carry tags`);
  }

  if (!call.caller.isAdmin && resource.accountUuid !== call.caller.accountUuid) {
    throw new ApiError("permissionDenied", `resource ${resourceUuid} belongs to another account`);
  }

  return resource;
}

function createTag(type: "System" | "User"): ApiHandler {
  return {
    async check(core, call) {
      const error = type === "System" ? systemTagError(String(call.params.tag)) : undefined;

      if (error) {
        throw new ApiError("invalidArgument", `params.tag: ${error}`);
      }

      await taggedResource(core.kysely, call);
    },
    run: (_core, call) =>
      call.commit(async (tx) => {
        const resource = await taggedResource(tx, call);
        const stamp = now();
        const row = {
          uuid: newUuid(),
          resourceUuid: resource.uuid,
          resourceType: resource.resourceType,
          tag: String(call.params.tag),
          type,
          inherent: 0,
          accountUuid: resource.accountUuid,
          createDate: stamp,
          lastOpDate: stamp,
        };
        await tx.insertInto("tags").values(row).execute();
        return { inventory: tagInventory(row) };
      }),
  };
}

export const tagHandlers: ApiHandlers = {
  createSystemTag: createTag("System"),
  createUserTag: createTag("User"),
  querySystemTag: withType(queryHandler("SystemTag"), "System"),
  queryUserTag: withType(queryHandler("UserTag"), "User"),
  deleteTag: {
    check: async (core, call) => void (await loadDeletableTag(core.kysely, call)),
    run: (_core, call) =>
      call.commit(async (tx) => {
        const tag = await loadDeletableTag(tx, call);
        await tx.deleteFrom("tags").where("uuid", "=", tag.uuid).execute();
        return {};
      }),
  },
};

/** Restricts a tag query to one tag type by adding a fixed condition. */
function withType(handler: ApiHandler, type: string): ApiHandler {
  return {
    run: (core, call) => {
      const q =
        call.query.q === undefined
          ? []
          : Array.isArray(call.query.q)
            ? call.query.q
            : [call.query.q];
      return handler.run(core, { ...call, query: { ...call.query, q: [...q, `type=${type}`] } });
    },
  };
}

/**
 * Loads the tag of a delete path. Raises SYS.1003 when it is absent and ID.1002 when another
 * account owns it.
 */
async function loadDeletableTag(db: Executor, call: ApiCall) {
  const tag = await db
    .selectFrom("tags")
    .selectAll()
    .where("uuid", "=", call.path.uuid!)
    .executeTakeFirst();

  if (!tag) {
    throw new ApiError("notFound", `tag ${call.path.uuid} was not found`);
  }

  if (!call.caller.isAdmin && tag.accountUuid !== call.caller.accountUuid) {
    throw new ApiError("permissionDenied", `tag ${call.path.uuid} belongs to another account`);
  }

  if (tag.inherent) {
    throw new ApiError(
      "invalidArgument",
      `tag ${call.path.uuid} is inherent to its resource and cannot be deleted`,
    );
  }

  return tag;
}
