import { StorageError } from "./errors.js";

const UUID_PATTERN = /^[0-9a-f]{32}$/;

/**
 * Checks that a value is a tstack UUID (32 lower-case hex characters) before it becomes part of
 * a file path, so no caller string can add a separator or `..` to a path.
 */
export function assertUuid(value: unknown, label: string): asserts value is string {
  if (typeof value !== "string" || !UUID_PATTERN.test(value)) {
    const quoted = typeof value === "string" ? JSON.stringify(value.slice(0, 80)) : typeof value;
    throw new StorageError(
      "INVALID_ARGUMENT",
      `invalid ${label} ${quoted}: expected 32 lower-case hex characters`,
    );
  }
}
