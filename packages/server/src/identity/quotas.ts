import { ApiError } from "@tstack/api";
import type { Executor } from "../core/events.js";
import { newUuid, now } from "../core/ids.js";

/** A per-account quota with ZStack's name and default. */
export interface QuotaDefinition {
  name: string;
  defaultValue: number;
  description: string;
  /** Returns what the account uses now, in the quota's unit. */
  usage(db: Executor, accountUuid: string): Promise<number>;
}

const definitions = new Map<string, QuotaDefinition>();

export function defineQuota(definition: QuotaDefinition) {
  definitions.set(definition.name, definition);
}

export function quotaDefinition(name: string) {
  return definitions.get(name);
}

export function quotaDefinitions() {
  return [...definitions.values()];
}

/** Returns the quota value of an account: its own row, else the default. */
export async function quotaValue(db: Executor, accountUuid: string, name: string) {
  const row = await db
    .selectFrom("quotas")
    .select("value")
    .where("identityUuid", "=", accountUuid)
    .where("name", "=", name)
    .executeTakeFirst();
  return row
    ? Number(row.value)
    : (definitions.get(name)?.defaultValue ?? Number.POSITIVE_INFINITY);
}

/**
 * Throws ID.1003 when adding `amount` would take the account over a quota. Call it inside the
 * transaction that creates the resource, so concurrent creates are counted against each other.
 * Admin accounts have no quotas.
 */
export async function checkQuota(
  db: Executor,
  account: { uuid: string; isAdmin: boolean },
  name: string,
  amount: number,
) {
  if (account.isAdmin) {
    return;
  }

  const definition = definitions.get(name);

  if (!definition) {
    throw new Error(`quota ${name} is not declared`);
  }

  const limit = await quotaValue(db, account.uuid, name);
  const used = await definition.usage(db, account.uuid);

  if (used + amount > limit) {
    throw new ApiError(
      "quotaExceeded",
      `quota ${name} of account ${account.uuid} exceeded: ${used} used + ${amount} requested > ${limit} allowed`,
      "ask an admin to raise the quota with updateQuota, or delete unused resources",
    );
  }
}

/** Gives a new account a row per declared quota, at its default, so queryQuota lists them all. */
export async function insertDefaultQuotas(db: Executor, accountUuid: string) {
  const stamp = now();

  for (const definition of definitions.values()) {
    await db
      .insertInto("quotas")
      .values({
        uuid: newUuid(),
        identityUuid: accountUuid,
        identityType: "AccountVO",
        name: definition.name,
        value: definition.defaultValue,
        createDate: stamp,
        lastOpDate: stamp,
      })
      .execute();
  }
}
