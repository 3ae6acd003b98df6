import { sql, type Transaction } from "kysely";
import type { Core } from "../core/core.js";
import type { Database } from "../db/schema.js";

/** Physical capacity of one primary storage directory, as the agent measures it with statfs. */
export interface PhysicalCapacity {
  totalPhysicalCapacity: number;
  availablePhysicalCapacity: number;
}

/** Bytes a volume of `size` virtual bytes reserves under `primaryStorage.overProvisioning.ratio`. */
export function reservationFor(core: Core, size: number) {
  return Math.ceil(size / core.config.number("primaryStorage", "overProvisioning.ratio"));
}

/**
 * Sets the physical capacity of a primary storage (or of one host's share of local storage) and
 * recomputes the available capacity as total minus what existing volumes reserved. The
 * subtraction happens in one UPDATE, so it counts every committed reservation.
 */
export async function recordCapacity(
  tx: Transaction<Database>,
  primaryStorageUuid: string,
  hostUuid: string | null,
  physical: PhysicalCapacity,
) {
  const total = physical.totalPhysicalCapacity;

  if (hostUuid) {
    const reserved = sql<number>`(select coalesce(sum(${sql.ref("reservedCapacity")}), 0) from ${sql.table("volumes")} where ${sql.ref("primaryStorageUuid")} = ${primaryStorageUuid} and ${sql.ref("hostUuid")} = ${hostUuid})`;
    await tx
      .updateTable("localStorageHostRefs")
      .set({
        totalCapacity: total,
        totalPhysicalCapacity: total,
        availablePhysicalCapacity: physical.availablePhysicalCapacity,
        availableCapacity: sql<number>`${total} - ${reserved}`,
      })
      .where("primaryStorageUuid", "=", primaryStorageUuid)
      .where("hostUuid", "=", hostUuid)
      .execute();
    await sumLocalStorage(tx, primaryStorageUuid);
    return;
  }

  const reserved = sql<number>`(select coalesce(sum(${sql.ref("reservedCapacity")}), 0) from ${sql.table("volumes")} where ${sql.ref("primaryStorageUuid")} = ${primaryStorageUuid})`;
  await tx
    .updateTable("primaryStorages")
    .set({
      totalCapacity: total,
      totalPhysicalCapacity: total,
      availablePhysicalCapacity: physical.availablePhysicalCapacity,
      availableCapacity: sql<number>`${total} - ${reserved}`,
    })
    .where("uuid", "=", primaryStorageUuid)
    .execute();
}

/** Local storage's capacity is the sum of its hosts'. */
export async function sumLocalStorage(tx: Transaction<Database>, primaryStorageUuid: string) {
  const sums = await tx
    .selectFrom("localStorageHostRefs")
    .select((eb) => [
      eb.fn.coalesce(eb.fn.sum<number>("totalCapacity"), eb.lit(0)).as("total"),
      eb.fn.coalesce(eb.fn.sum<number>("availableCapacity"), eb.lit(0)).as("available"),
      eb.fn.coalesce(eb.fn.sum<number>("totalPhysicalCapacity"), eb.lit(0)).as("totalPhysical"),
      eb.fn
        .coalesce(eb.fn.sum<number>("availablePhysicalCapacity"), eb.lit(0))
        .as("availablePhysical"),
    ])
    .where("primaryStorageUuid", "=", primaryStorageUuid)
    .executeTakeFirstOrThrow();
  await tx
    .updateTable("primaryStorages")
    .set({
      totalCapacity: Number(sums.total),
      availableCapacity: Number(sums.available),
      totalPhysicalCapacity: Number(sums.totalPhysical),
      availablePhysicalCapacity: Number(sums.availablePhysical),
    })
    .where("uuid", "=", primaryStorageUuid)
    .execute();
}

/**
 * Takes `amount` bytes from a primary storage (and from the host's share of local storage) in
 * one conditional UPDATE each, so concurrent reservations can never take more than is available
 * above `primaryStorage.reservedCapacity`. Returns false when there is not enough room; the
 * caller's transaction must then roll back any part already taken.
 */
export async function reserveCapacity(
  core: Core,
  tx: Transaction<Database>,
  primaryStorageUuid: string,
  hostUuid: string | null,
  amount: number,
) {
  const floor = core.config.number("primaryStorage", "reservedCapacity");
  const taken = await tx
    .updateTable("primaryStorages")
    .set({ availableCapacity: sql<number>`${sql.ref("availableCapacity")} - ${amount}` })
    .where("uuid", "=", primaryStorageUuid)
    .where(sql<boolean>`${sql.ref("availableCapacity")} - ${amount} >= ${floor}`)
    .executeTakeFirst();

  if (Number(taken.numUpdatedRows) === 0) {
    return false;
  }

  if (!hostUuid) {
    return true;
  }

  const hostTaken = await tx
    .updateTable("localStorageHostRefs")
    .set({ availableCapacity: sql<number>`${sql.ref("availableCapacity")} - ${amount}` })
    .where("primaryStorageUuid", "=", primaryStorageUuid)
    .where("hostUuid", "=", hostUuid)
    .where(sql<boolean>`${sql.ref("availableCapacity")} - ${amount} >= ${floor}`)
    .executeTakeFirst();
  return Number(hostTaken.numUpdatedRows) > 0;
}

/** Gives back what a volume reserved. */
export async function returnCapacity(
  tx: Transaction<Database>,
  primaryStorageUuid: string,
  hostUuid: string | null,
  amount: number,
) {
  await tx
    .updateTable("primaryStorages")
    .set({ availableCapacity: sql<number>`${sql.ref("availableCapacity")} + ${amount}` })
    .where("uuid", "=", primaryStorageUuid)
    .execute();

  if (hostUuid) {
    await tx
      .updateTable("localStorageHostRefs")
      .set({ availableCapacity: sql<number>`${sql.ref("availableCapacity")} + ${amount}` })
      .where("primaryStorageUuid", "=", primaryStorageUuid)
      .where("hostUuid", "=", hostUuid)
      .execute();
  }
}
