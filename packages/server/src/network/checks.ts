import { ApiError } from "@tstack/api";
import type { Executor } from "../core/events.js";

type Row = Record<string, unknown>;
// biome-ignore lint/suspicious/noExplicitAny: the table is chosen by the caller.
type AnyDb = any;

/**
 * Loads a row that a request names by uuid, or fails with a 400 that names the field, so a bad
 * reference is rejected before the job starts.
 */
export async function referenced(
  db: Executor,
  table: string,
  uuid: unknown,
  field: string,
  what: string,
): Promise<Row> {
  const row = (await (db as AnyDb)
    .selectFrom(table)
    .selectAll()
    .where("uuid", "=", String(uuid))
    .executeTakeFirst()) as Row | undefined;

  if (!row) {
    throw new ApiError(
      "invalidArgument",
      `${field}: ${what} ${String(uuid)} was not found; pass the uuid of an existing ${what}`,
    );
  }

  return row;
}

/** Throws a 400 naming the field. */
export function invalid(field: string, message: string): never {
  throw new ApiError("invalidArgument", `${field}: ${message}`);
}
