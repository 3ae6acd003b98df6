import { randomUUID } from "node:crypto";

/** Returns a new ZStack-style UUID: 32 lower-case hex characters. */
export function newUuid(): string {
  return randomUUID().replaceAll("-", "");
}

export const UUID_PATTERN = /^[0-9a-f]{32}$/;

/** Returns the current time as an ISO 8601 string in UTC. */
export function now(): string {
  return new Date().toISOString();
}
