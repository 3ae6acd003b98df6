import { createHash } from "node:crypto";

/** Hashes a clear-text password the way ZStack clients send it: SHA-512, lower-case hex. */
export function sha512Hex(password: string): string {
  return createHash("sha512").update(password, "utf8").digest("hex");
}
