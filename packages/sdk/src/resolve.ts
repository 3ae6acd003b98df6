import type { ResourceEntry } from "./catalog.js";
import type { TstackClient } from "./client.js";

const UUID = /^[0-9a-f]{32}$/;

/** A name that matched no resource, or several. */
export class ResolveError extends Error {
  constructor(
    message: string,
    /** The uuids of every resource with that name; empty when none matched. */
    readonly candidates: string[],
  ) {
    super(message);
    this.name = "ResolveError";
  }
}

/**
 * Returns the uuid of a resource given its uuid or its name. A name is looked up with
 * `q=name=<value>`; no match or several matches throw `ResolveError`.
 */
export async function resolveUuid(client: TstackClient, resource: ResourceEntry, value: string) {
  if (UUID.test(value) || !resource.query) {
    return value;
  }

  const found = await client.query<{ uuid: string }>(resource.query.name, [`name=${value}`], {
    fields: "uuid",
  });
  const uuids = found.inventories.map((inventory) => inventory.uuid);

  if (uuids.length === 0) {
    throw new ResolveError(
      `${resource.command} '${value}' not found: no ${resource.name} has that name or uuid`,
      [],
    );
  }

  if (uuids.length > 1) {
    throw new ResolveError(
      `${resource.command} name '${value}' is ambiguous: ${uuids.length} resources have it (${uuids.join(", ")}); pass a uuid instead`,
      uuids,
    );
  }

  return uuids[0]!;
}
