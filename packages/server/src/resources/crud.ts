import { ApiError } from "@tstack/api";
import type { Transaction } from "kysely";
import type { Core } from "../core/core.js";
import { type Executor, emitEvent } from "../core/events.js";
import { newUuid, now } from "../core/ids.js";
import type { Database } from "../db/schema.js";
import type { Caller } from "../identity/sessions.js";
import type { ApiCall, ApiHandler } from "../rest/api.js";
import { runQuery } from "../rest/query-engine.js";
import { type ResourceDefinition, resourceDefinition } from "./registry.js";
import { insertTags } from "./tags.js";

// biome-ignore lint/suspicious/noExplicitAny: resource tables are chosen at run time.
type AnyTx = Transaction<any>;
type Row = Record<string, unknown>;

/** Turns `Zone` into `zone` for event paths such as `/zone/state/change`. */
export function eventName(type: string) {
  return type.charAt(0).toLowerCase() + type.slice(1);
}

/** Loads one resource row the caller may act on; SYS.1003 when absent, ID.1002 when not theirs. */
export async function loadResource(
  db: Executor,
  type: string,
  uuid: string,
  caller: Caller,
): Promise<Row> {
  const definition = resourceDefinition(type);
  const row = await loadReadableResource(db, type, uuid, caller);
  const owner = row[definition.ownerColumn ?? "accountUuid"];

  if (caller.isAdmin || owner === caller.accountUuid) {
    return row;
  }

  throw new ApiError(
    "permissionDenied",
    `${type} ${uuid} is shared read-only with account ${caller.accountUuid}`,
  );
}

/**
 * Loads one resource row the caller may read, such as an image another account shares. Raises
 * SYS.1003 when it is absent and ID.1002 when its visibility hides it from the caller.
 */
export async function loadReadableResource(
  db: Executor,
  type: string,
  uuid: string,
  caller: Caller,
): Promise<Row> {
  const definition = resourceDefinition(type);
  const row = (await (db as AnyTx)
    .selectFrom(definition.table)
    .selectAll()
    .where(definition.key, "=", uuid)
    .executeTakeFirst()) as Row | undefined;

  if (!row) {
    throw new ApiError(
      "notFound",
      `${type} ${uuid} was not found; check the uuid, or query the collection for existing ones`,
    );
  }

  if (!(await isReadableBy(db, type, row, caller))) {
    throw new ApiError("permissionDenied", `${type} ${uuid} belongs to another account`);
  }

  return row;
}

/** Returns whether the caller may read the row, as an admin or by the type's visibility. */
export async function isReadableBy(db: Executor, type: string, row: Row, caller: Caller) {
  const definition = resourceDefinition(type);
  const owner = row[definition.ownerColumn ?? "accountUuid"];

  if (caller.isAdmin || definition.visibility === "public" || owner === caller.accountUuid) {
    return true;
  }

  if (definition.visibility !== "shared" || typeof owner !== "string") {
    return false;
  }

  const account = await (db as AnyTx)
    .selectFrom("accounts")
    .select("type")
    .where("uuid", "=", owner)
    .executeTakeFirst();
  return account?.type === "SystemAdmin";
}

/** Inserts a new resource row with its index entry, tags and creation event. */
export async function insertResource(
  tx: AnyTx,
  core: Core,
  type: string,
  row: Row,
  call: ApiCall,
): Promise<Row> {
  const definition = resourceDefinition(type);
  const stamp = now();
  const uuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
  const full: Row = {
    uuid,
    description: null,
    accountUuid: call.caller.accountUuid,
    createDate: stamp,
    lastOpDate: stamp,
    version: 0,
    ...row,
  };

  const taken = await tx
    .selectFrom("resources")
    .select("resourceType")
    .where("uuid", "=", uuid)
    .executeTakeFirst();

  if (taken) {
    throw new ApiError(
      "invalidArgument",
      `resourceUuid ${uuid} is already used by a ${taken.resourceType}; choose another uuid`,
    );
  }

  await tx.insertInto(definition.table).values(full).execute();
  await tx
    .insertInto("resources")
    .values({
      uuid,
      resourceType: type,
      name: (full.name as string) ?? null,
      accountUuid: String(full.accountUuid),
      createDate: stamp,
    })
    .execute();
  await insertTags(
    tx,
    core,
    { uuid, type, accountUuid: String(full.accountUuid) },
    call.systemTags,
    call.userTags,
  );
  await emitEvent(tx, `/${eventName(type)}/create`, {
    resourceUuid: uuid,
    accountUuid: String(full.accountUuid),
    content: { uuid, type },
  });
  return full;
}

/** Reads back a resource as its inventory. */
export async function inventoryOf(db: Executor, type: string, uuid: string) {
  const definition = resourceDefinition(type);
  const row = (await (db as AnyTx)
    .selectFrom(definition.table)
    .selectAll()
    .where(definition.key, "=", uuid)
    .executeTakeFirstOrThrow()) as Row;
  const [enriched] = definition.enrich ? await definition.enrich(db as never, [row]) : [row];
  return definition.toInventory(enriched ?? row);
}

/**
 * Updates columns of a resource under a version check, so a late or retried write cannot
 * overwrite a newer state. Returns the new inventory.
 */
export async function updateResource(tx: AnyTx, type: string, row: Row, changes: Row) {
  const definition = resourceDefinition(type);
  const version = Number(row.version ?? 0);
  const result = await tx
    .updateTable(definition.table)
    .set({ ...changes, lastOpDate: now(), version: version + 1 })
    .where(definition.key, "=", row[definition.key])
    .where("version", "=", version)
    .executeTakeFirst();

  if (Number(result.numUpdatedRows) === 0) {
    throw new ApiError(
      "invalidState",
      `${type} ${String(row[definition.key])} changed while this request ran; retry it`,
    );
  }

  if (changes.name !== undefined) {
    await tx
      .updateTable("resources")
      .set({ name: changes.name })
      .where("uuid", "=", row[definition.key])
      .execute();
  }

  return inventoryOf(tx, type, String(row[definition.key]));
}

/** Removes a resource row, its index entry and its tags, and emits its deletion event. */
export async function deleteResourceRow(tx: AnyTx, type: string, row: Row) {
  const definition = resourceDefinition(type);
  const uuid = String(row[definition.key]);
  await tx.deleteFrom("tags").where("resourceUuid", "=", uuid).execute();
  await tx.deleteFrom("resourceConfigs").where("resourceUuid", "=", uuid).execute();
  await tx.deleteFrom(definition.table).where(definition.key, "=", uuid).execute();
  await tx.deleteFrom("resources").where("uuid", "=", uuid).execute();
  await emitEvent(tx, `/${eventName(type)}/delete`, {
    resourceUuid: uuid,
    accountUuid: String(row.accountUuid ?? ""),
    content: { uuid, type },
  });
}

/** The query handler of a resource type. */
export function queryHandler(type: string): ApiHandler {
  return {
    run(core, call) {
      const query = call.query;
      const conditions = toList(query.q);
      const fixed = call.path.uuid
        ? [{ field: resourceDefinition(type).key, op: "=" as const, value: call.path.uuid }]
        : [];
      const request = {
        conditions,
        limit: one(query.limit),
        start: one(query.start),
        count: one(query.count),
        replyWithCount: one(query.replyWithCount),
        sort: one(query.sort),
        sortBy: one(query.sortBy),
        sortDirection: one(query.sortDirection),
        fields: one(query.fields),
      };
      return runQuery(core.db, type, request, call.caller, fixed);
    },
  };
}

function toList(value: string | string[] | undefined) {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

function one(value: string | string[] | undefined) {
  return Array.isArray(value) ? value[value.length - 1] : value;
}

/** The update handler for name and description (and any other plain columns in `columns`). */
export function updateHandler(
  type: string,
  columns: string[] = ["name", "description"],
): ApiHandler {
  return {
    check: async (core, call) =>
      void (await loadResource(core.kysely, type, call.path.uuid!, call.caller)),
    run: (_core, call) =>
      call.commit(async (tx) => {
        const row = await loadResource(tx, type, call.path.uuid!, call.caller);
        const changes = Object.fromEntries(
          columns
            .filter((column) => call.params[column] !== undefined)
            .map((column) => [column, call.params[column]]),
        );
        return { inventory: await updateResource(tx, type, row, changes) };
      }),
  };
}

/** State machine of resources that are only Enabled or Disabled. */
const ENABLE_DISABLE: Record<string, Record<string, string>> = {
  Enabled: { disable: "Disabled", enable: "Enabled" },
  Disabled: { enable: "Enabled", disable: "Disabled" },
};

/** The change-state handler, driven by a transition table of state → event → next state. */
export function changeStateHandler(type: string, transitions = ENABLE_DISABLE): ApiHandler {
  return {
    check: async (core, call) =>
      void (await loadResource(core.kysely, type, call.path.uuid!, call.caller)),
    run: (_core, call) =>
      call.commit(async (tx) => {
        const row = await loadResource(tx, type, call.path.uuid!, call.caller);
        const from = String(row.state);
        const event = String(call.params.stateEvent);
        const next = transitions[from]?.[event];

        if (!next) {
          const allowed = Object.keys(transitions[from] ?? {});
          throw new ApiError(
            "invalidState",
            `cannot ${event} ${type} ${call.path.uuid} in state ${from}; allowed state events: ${allowed.join(", ") || "none"}`,
          );
        }

        const inventory = await updateResource(tx, type, row, { state: next });

        if (next !== from) {
          await emitEvent(tx, `/${eventName(type)}/state/change`, {
            resourceUuid: call.path.uuid!,
            accountUuid: String(row.accountUuid),
            content: { uuid: call.path.uuid, oldState: from, newState: next },
          });
        }

        return { inventory };
      }),
  };
}

/** Reads `deleteMode`; Permissive runs the deletion checks, Enforcing skips them. */
export function deleteMode(call: ApiCall): "Permissive" | "Enforcing" {
  const mode = call.query.deleteMode ?? "Permissive";

  if (mode !== "Permissive" && mode !== "Enforcing") {
    throw new ApiError(
      "invalidArgument",
      `invalid deleteMode '${String(mode)}': expected Permissive or Enforcing`,
    );
  }

  return mode;
}

/** The delete handler of a resource without children. */
export function simpleDeleteHandler(
  type: string,
  beforeDelete?: (tx: AnyTx, row: Row, call: ApiCall) => Promise<void>,
): ApiHandler {
  return {
    check: async (core, call) => {
      deleteMode(call);
      await loadResource(core.kysely, type, call.path.uuid!, call.caller);
    },
    run: (_core, call) =>
      call.commit(async (tx) => {
        const row = await loadResource(tx, type, call.path.uuid!, call.caller);
        await beforeDelete?.(tx, row, call);
        await deleteResourceRow(tx, type, row);
        return {};
      }),
  };
}

export type { Database, ResourceDefinition };
