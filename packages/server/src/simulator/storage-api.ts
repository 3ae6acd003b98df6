import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";
import { newUuid } from "../core/ids.js";
import { deleteResourceRow, insertResource, inventoryOf, loadResource } from "../resources/crud.js";
import type { ApiCall, ApiHandler } from "../rest/api.js";
import { connectBackupStorage } from "../storage/backup-storage.js";
import { checkStorageDirectory } from "../storage/checks.js";
import { registerSimulatorStorage, unregisterFromSimulator } from "./targets.js";

async function checkUrlFree(core: Core, kind: "primary" | "backup", url: string) {
  const taken = await core.kysely
    .selectFrom("simulatorStorages")
    .select("uuid")
    .where("kind", "=", kind)
    .where("url", "=", url)
    .executeTakeFirst();

  if (taken) {
    throw new ApiError(
      "invalidArgument",
      `params.url: simulator ${kind} storage ${taken.uuid} already uses ${url}; give another path`,
    );
  }
}

function checkCapacities(call: ApiCall) {
  if (Number(call.params.availableCapacity) > Number(call.params.totalCapacity)) {
    throw new ApiError(
      "invalidArgument",
      `params.availableCapacity: ${String(call.params.availableCapacity)} is more than totalCapacity ${String(call.params.totalCapacity)}`,
    );
  }
}

/**
 * Adds simulator primary storage. It is shared storage: every simulator host of an attached
 * cluster reads the same volumes, and its capacity is the one given here.
 */
export function addSimulatorPrimaryStorage(): ApiHandler {
  return {
    async check(core, call) {
      const url = checkStorageDirectory("params.url", call.params.url);
      checkCapacities(call);
      await loadResource(core.kysely, "Zone", String(call.params.zoneUuid), call.caller).catch(
        () => {
          throw new ApiError(
            "invalidArgument",
            `params.zoneUuid: zone ${String(call.params.zoneUuid)} was not found`,
          );
        },
      );
      await checkUrlFree(core, "primary", url);
    },
    async run(core, call) {
      const uuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
      const total = Number(call.params.totalCapacity);
      const available = Number(call.params.availableCapacity);
      await core.transact(async (tx) => {
        await insertResource(
          tx,
          core,
          "PrimaryStorage",
          {
            uuid,
            name: call.params.name,
            description: call.params.description ?? null,
            type: "SimulatorPrimaryStorage",
            url: call.params.url,
            zoneUuid: call.params.zoneUuid,
            state: "Enabled",
            status: "Connected",
            totalCapacity: total,
            availableCapacity: available,
            totalPhysicalCapacity: total,
            availablePhysicalCapacity: available,
            lastError: null,
          },
          { ...call, params: { ...call.params, resourceUuid: uuid } },
        );
        await tx
          .insertInto("simulatorStorages")
          .values({
            uuid,
            kind: "primary",
            url: String(call.params.url),
            totalCapacity: total,
            availableCapacity: available,
            agentSecret: null,
          })
          .execute();
      });

      try {
        await registerSimulatorStorage(core, uuid);
      } catch (error) {
        await removeStorage(core, "PrimaryStorage", uuid);
        throw error;
      }

      return { inventory: await inventoryOf(core.kysely, "PrimaryStorage", uuid) };
    },
  };
}

/**
 * Adds simulator backup storage. The simulator serves it as an image store of its own, so its
 * `hostUuid` is its own uuid and its commands carry that uuid in `x-resource-uuid`.
 */
export function addSimulatorBackupStorage(): ApiHandler {
  return {
    async check(core, call) {
      const url = checkStorageDirectory("params.url", call.params.url);
      checkCapacities(call);
      await checkUrlFree(core, "backup", url);
    },
    async run(core, call) {
      const uuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
      await core.transact(async (tx) => {
        await insertResource(
          tx,
          core,
          "BackupStorage",
          {
            uuid,
            name: call.params.name,
            description: call.params.description ?? null,
            type: "SimulatorBackupStorage",
            url: call.params.url,
            hostname: "simulator",
            hostUuid: uuid,
            state: "Enabled",
            status: "Connecting",
            totalCapacity: 0,
            availableCapacity: 0,
            lastError: null,
          },
          { ...call, params: { ...call.params, resourceUuid: uuid } },
        );
        await tx
          .insertInto("simulatorStorages")
          .values({
            uuid,
            kind: "backup",
            url: String(call.params.url),
            totalCapacity: Number(call.params.totalCapacity),
            availableCapacity: Number(call.params.availableCapacity),
            agentSecret: core.secrets.seal(newUuid() + newUuid()),
          })
          .execute();
      });

      try {
        await registerSimulatorStorage(core, uuid);
        await connectBackupStorage(core, uuid);
      } catch (error) {
        await removeStorage(core, "BackupStorage", uuid);
        throw error;
      }

      return { inventory: await inventoryOf(core.kysely, "BackupStorage", uuid) };
    },
  };
}

/** Undoes a failed add: ZStack keeps no storage that failed to add. */
async function removeStorage(core: Core, type: "PrimaryStorage" | "BackupStorage", uuid: string) {
  await core.transact(async (tx) => {
    const table = type === "PrimaryStorage" ? "primaryStorages" : "backupStorages";
    const row = await tx.selectFrom(table).selectAll().where("uuid", "=", uuid).executeTakeFirst();

    if (row) {
      await deleteResourceRow(tx, type, row);
    }

    await tx.deleteFrom("simulatorStorages").where("uuid", "=", uuid).execute();
  });
  await unregisterFromSimulator(core, uuid, "storage");
}

/** Removes a deleted storage's simulator row and registration; other storage is left alone. */
export async function forgetSimulatorStorage(core: Core, uuid: string) {
  const removed = await core.kysely
    .deleteFrom("simulatorStorages")
    .where("uuid", "=", uuid)
    .executeTakeFirst();

  if (Number(removed.numDeletedRows) > 0) {
    await unregisterFromSimulator(core, uuid, "storage");
  }
}
