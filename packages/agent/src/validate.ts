/** A request value that the agent rejects before it reaches a device name, path or QEMU option. */
export class ValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ValidationError";
  }
}

const UUID = /^[0-9a-f]{32}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

// Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no slash, space or colon.
const INTERFACE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

/** Checks that a value is a tstack UUID: 32 lower-case hex digits without dashes. */
export function assertUuid(value: unknown, field: string): asserts value is string {
  if (typeof value !== "string" || !UUID.test(value)) {
    throw new ValidationError(
      `invalid ${field} ${JSON.stringify(value)}: expected 32 lower-case hex digits`,
    );
  }
}

/** Formats a tstack UUID as 8-4-4-4-12, the form QEMU's `-uuid` and SMBIOS expect. */
export function dashedUuid(uuid: string) {
  assertUuid(uuid, "uuid");
  return `${uuid.slice(0, 8)}-${uuid.slice(8, 12)}-${uuid.slice(12, 16)}-${uuid.slice(16, 20)}-${uuid.slice(20)}`;
}

/** Checks a Linux network interface name such as a bridge or tap device. */
export function assertInterfaceName(value: unknown, field: string): asserts value is string {
  if (typeof value !== "string" || !INTERFACE_NAME.test(value)) {
    throw new ValidationError(
      `invalid ${field} ${JSON.stringify(value)}: expected 1-15 characters of A-Z a-z 0-9 _ . -`,
    );
  }
}

/** Checks a MAC address in lower-case colon form, such as 52:54:00:12:34:56. */
export function assertMac(value: unknown, field: string): asserts value is string {
  if (typeof value !== "string" || !MAC.test(value)) {
    throw new ValidationError(
      `invalid ${field} ${JSON.stringify(value)}: expected a lower-case MAC like 52:54:00:12:34:56`,
    );
  }
}

/**
 * Checks a host file path that goes into a QEMU option. Commas are rejected because QEMU's option
 * parser treats them as separators.
 */
export function assertOptionPath(value: unknown, field: string): asserts value is string {
  if (typeof value !== "string" || !value.startsWith("/") || /[,\n\0]/.test(value)) {
    throw new ValidationError(
      `invalid ${field} ${JSON.stringify(value)}: expected an absolute path without commas`,
    );
  }
}

/** Checks that a value is an integer within a range. */
export function assertInteger(
  value: unknown,
  field: string,
  min: number,
  max: number,
): asserts value is number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(
      `invalid ${field} ${JSON.stringify(value)}: expected an integer from ${min} to ${max}`,
    );
  }
}
