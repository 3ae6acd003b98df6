import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";
import { emitEvent } from "../core/events.js";
import { newUuid, now } from "../core/ids.js";
import {
  changeStateHandler,
  deleteMode,
  deleteResourceRow,
  insertResource,
  inventoryOf,
  loadResource,
  queryHandler,
  updateHandler,
} from "../resources/crud.js";
import type { ApiHandlers } from "../rest/api.js";
import { agentReason, storageCall } from "./agent.js";
import { checkStorageDirectory } from "./checks.js";

interface StoreCapacity {
  totalCapacity: number;
  availableCapacity: number;
}

/**
 * Initializes an image store on its host and records its capacity. The status ends Connected,
 * or Disconnected with the agent's reason, which is then thrown.
 */
export async function connectBackupStorage(core: Core, backupStorageUuid: string) {
  const store = await core.kysely
    .selectFrom("backupStorages")
    .selectAll()
    .where("uuid", "=", backupStorageUuid)
    .executeTakeFirstOrThrow();
  await setBackupStorageStatus(core, backupStorageUuid, "Connecting", null);

  try {
    const capacity = await storageCall<StoreCapacity>(core, store.hostUuid, "/imagestore/init", {
      root: store.url,
      backupStorageUuid,
    });
    await core.kysely
      .updateTable("backupStorages")
      .set({
        totalCapacity: capacity.totalCapacity,
        availableCapacity: capacity.availableCapacity,
      })
      .where("uuid", "=", backupStorageUuid)
      .execute();
  } catch (error) {
    const reason = agentReason(error);
    await setBackupStorageStatus(core, backupStorageUuid, "Disconnected", reason);
    throw new ApiError(
      "operationFailed",
      `failed to connect image store ${backupStorageUuid} at ${store.url} on host ${store.hostname}: ${reason}`,
      "fix the directory or the host, then call reconnectBackupStorage",
    );
  }

  await setBackupStorageStatus(core, backupStorageUuid, "Connected", null);
}

async function setBackupStorageStatus(
  core: Core,
  uuid: string,
  status: string,
  lastError: string | null,
) {
  await core.transact(async (tx) => {
    const row = await tx
      .selectFrom("backupStorages")
      .select(["status", "accountUuid"])
      .where("uuid", "=", uuid)
      .executeTakeFirst();

    if (!row) {
      return;
    }

    await tx
      .updateTable("backupStorages")
      .set({ status, lastError, lastOpDate: now() })
      .where("uuid", "=", uuid)
      .execute();

    if (row.status !== status) {
      await emitEvent(tx, "/backupStorage/status/change", {
        resourceUuid: uuid,
        accountUuid: row.accountUuid,
        content: { backupStorageUuid: uuid, oldStatus: row.status, newStatus: status },
      });
    }
  });
}

/** Refreshes the capacity of an image store from its agent; failures leave the old numbers. */
export async function refreshBackupStorageCapacity(core: Core, backupStorageUuid: string) {
  const store = await core.kysely
    .selectFrom("backupStorages")
    .select(["url", "hostUuid"])
    .where("uuid", "=", backupStorageUuid)
    .executeTakeFirstOrThrow();
  const capacity = await storageCall<StoreCapacity>(core, store.hostUuid, "/imagestore/capacity", {
    root: store.url,
  });
  await core.kysely
    .updateTable("backupStorages")
    .set({ totalCapacity: capacity.totalCapacity, availableCapacity: capacity.availableCapacity })
    .where("uuid", "=", backupStorageUuid)
    .execute();
}

export function backupStorageHandlers(): ApiHandlers {
  return {
    addImageStoreBackupStorage: {
      async check(core, call) {
        const url = checkStorageDirectory("params.url", call.params.url);
        const host = await core.kysely
          .selectFrom("hosts")
          .select(["uuid", "status"])
          .where("managementIp", "=", String(call.params.hostname))
          .executeTakeFirst();

        if (!host) {
          throw new ApiError(
            "invalidArgument",
            `params.hostname: no host has the management IP ${String(call.params.hostname)}; add the host with addKVMHost first`,
          );
        }

        const taken = await core.kysely
          .selectFrom("backupStorages")
          .select("uuid")
          .where("hostUuid", "=", host.uuid)
          .where("url", "=", url)
          .executeTakeFirst();

        if (taken) {
          throw new ApiError(
            "invalidArgument",
            `params.url: backup storage ${taken.uuid} already uses ${url} on ${String(call.params.hostname)}`,
          );
        }
      },
      async run(core, call) {
        const uuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
        await core.transact(async (tx) => {
          const host = await tx
            .selectFrom("hosts")
            .select("uuid")
            .where("managementIp", "=", String(call.params.hostname))
            .executeTakeFirstOrThrow();
          await insertResource(
            tx,
            core,
            "BackupStorage",
            {
              uuid,
              name: call.params.name,
              description: call.params.description ?? null,
              type: "ImageStoreBackupStorage",
              url: call.params.url,
              hostname: call.params.hostname,
              hostUuid: host.uuid,
              state: "Enabled",
              status: "Connecting",
              totalCapacity: 0,
              availableCapacity: 0,
              lastError: null,
            },
            { ...call, params: { ...call.params, resourceUuid: uuid } },
          );
        });

        try {
          await connectBackupStorage(core, uuid);
        } catch (error) {
          // ZStack keeps no backup storage that failed to add; neither do we.
          await core.transact(async (tx) => {
            const row = await tx
              .selectFrom("backupStorages")
              .selectAll()
              .where("uuid", "=", uuid)
              .executeTakeFirstOrThrow();
            await deleteResourceRow(tx, "BackupStorage", row);
          });
          throw error;
        }

        return { inventory: await inventoryOf(core.kysely, "BackupStorage", uuid) };
      },
    },
    queryBackupStorage: queryHandler("BackupStorage"),
    updateBackupStorage: updateHandler("BackupStorage"),
    changeBackupStorageState: changeStateHandler("BackupStorage"),
    reconnectBackupStorage: {
      check: async (core, call) =>
        void (await loadResource(core.kysely, "BackupStorage", call.path.uuid!, call.caller)),
      async run(core, call) {
        await connectBackupStorage(core, call.path.uuid!);
        return { inventory: await inventoryOf(core.kysely, "BackupStorage", call.path.uuid!) };
      },
    },
    deleteBackupStorage: {
      async check(core, call) {
        const mode = deleteMode(call);
        await loadResource(core.kysely, "BackupStorage", call.path.uuid!, call.caller);

        if (mode === "Enforcing") {
          return;
        }

        const image = await core.kysely
          .selectFrom("imageBackupStorageRefs")
          .select("imageUuid")
          .where("backupStorageUuid", "=", call.path.uuid!)
          .executeTakeFirst();

        if (image) {
          throw new ApiError(
            "invalidState",
            `backup storage ${call.path.uuid} still holds image ${image.imageUuid}; expunge its images first or delete with deleteMode=Enforcing`,
          );
        }
      },
      run: (_core, call) =>
        call.commit(async (tx) => {
          const row = await loadResource(tx, "BackupStorage", call.path.uuid!, call.caller);
          await tx
            .deleteFrom("imageBackupStorageRefs")
            .where("backupStorageUuid", "=", call.path.uuid!)
            .execute();
          await tx
            .deleteFrom("backupStorageZoneRefs")
            .where("backupStorageUuid", "=", call.path.uuid!)
            .execute();
          await deleteResourceRow(tx, "BackupStorage", row);
          return {};
        }),
    },
    attachBackupStorageToZone: {
      async check(core, call) {
        await loadResource(core.kysely, "Zone", call.path.zoneUuid!, call.caller);
        await loadResource(core.kysely, "BackupStorage", call.path.backupStorageUuid!, call.caller);
      },
      queueKey: (call) => call.path.backupStorageUuid,
      run: (_core, call) =>
        call.commit(async (tx) => {
          const existing = await tx
            .selectFrom("backupStorageZoneRefs")
            .select("zoneUuid")
            .where("backupStorageUuid", "=", call.path.backupStorageUuid!)
            .where("zoneUuid", "=", call.path.zoneUuid!)
            .executeTakeFirst();

          if (!existing) {
            await tx
              .insertInto("backupStorageZoneRefs")
              .values({
                backupStorageUuid: call.path.backupStorageUuid!,
                zoneUuid: call.path.zoneUuid!,
                createDate: now(),
              })
              .execute();
          }

          return {
            inventory: await inventoryOf(tx, "BackupStorage", call.path.backupStorageUuid!),
          };
        }),
    },
    detachBackupStorageFromZone: {
      async check(core, call) {
        await loadResource(core.kysely, "BackupStorage", call.path.backupStorageUuid!, call.caller);
        const ref = await core.kysely
          .selectFrom("backupStorageZoneRefs")
          .select("zoneUuid")
          .where("backupStorageUuid", "=", call.path.backupStorageUuid!)
          .where("zoneUuid", "=", call.path.zoneUuid!)
          .executeTakeFirst();

        if (!ref) {
          throw new ApiError(
            "invalidArgument",
            `backup storage ${call.path.backupStorageUuid} is not attached to zone ${call.path.zoneUuid}`,
          );
        }
      },
      queueKey: (call) => call.path.backupStorageUuid,
      run: (_core, call) =>
        call.commit(async (tx) => {
          await tx
            .deleteFrom("backupStorageZoneRefs")
            .where("backupStorageUuid", "=", call.path.backupStorageUuid!)
            .where("zoneUuid", "=", call.path.zoneUuid!)
            .execute();
          return {
            inventory: await inventoryOf(tx, "BackupStorage", call.path.backupStorageUuid!),
          };
        }),
    },
  };
}
