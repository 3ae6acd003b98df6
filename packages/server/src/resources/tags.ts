import { ApiError } from "@tstack/api";
import type { Transaction } from "kysely";
import type { Core } from "../core/core.js";
import { newUuid, now } from "../core/ids.js";

// biome-ignore lint/suspicious/noExplicitAny: called with transactions over any schema view.
type AnyTx = Transaction<any>;

/** A system tag is `key::value` or `key::token::token`; the key names the feature that reads it. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what the pattern rejects.
const SYSTEM_TAG_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]*::[^\x00-\x1f]+$/;

/** Validates and returns an error text for a malformed system tag. */
export function systemTagError(tag: string): string | undefined {
  if (!SYSTEM_TAG_PATTERN.test(tag)) {
    return `invalid system tag '${tag.slice(0, 200)}': expected key::value with a key of letters, digits, '_', '.' or '-'`;
  }

  return undefined;
}

/** Writes a new resource's system and user tags. */
export async function insertTags(
  tx: AnyTx,
  _core: Core,
  resource: { uuid: string; type: string; accountUuid: string },
  systemTags: string[],
  userTags: string[],
) {
  const stamp = now();
  const rows = [
    ...systemTags.map((tag) => ({ tag, type: "System" })),
    ...userTags.map((tag) => ({ tag, type: "User" })),
  ];

  for (const { tag, type } of rows) {
    const error = type === "System" ? systemTagError(tag) : undefined;

    if (error) {
      throw new ApiError("invalidArgument", error);
    }

    await tx
      .insertInto("tags")
      .values({
        uuid: newUuid(),
        resourceUuid: resource.uuid,
        resourceType: resource.type,
        tag,
        type,
        inherent: 0,
        accountUuid: resource.accountUuid,
        createDate: stamp,
        lastOpDate: stamp,
      })
      .execute();
  }
}
