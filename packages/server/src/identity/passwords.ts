import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: object,
) => Promise<Buffer>;

// scrypt cost: N=2^15, r=8, p=1 takes about 50-100 ms and 32 MiB per hash on one core.
const COST = { N: 32768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const KEY_LENGTH = 32;

/**
 * Hashes the SHA-512 hex that clients send with scrypt, so a stolen database does not give
 * away a value that logs in. Format: `scrypt$N$r$p$<salt hex>$<hash hex>`.
 */
export async function hashPassword(sha512Hex: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(sha512Hex, salt, KEY_LENGTH, COST);
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString("hex")}$${hash.toString("hex")}`;
}

export async function verifyPassword(sha512Hex: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, saltHex, hashHex] = stored.split("$");

  if (scheme !== "scrypt" || !saltHex || !hashHex) {
    return false;
  }

  const expected = Buffer.from(hashHex, "hex");
  const options = { N: Number(n), r: Number(r), p: Number(p), maxmem: COST.maxmem };
  const actual = await scryptAsync(
    sha512Hex,
    Buffer.from(saltHex, "hex"),
    expected.length,
    options,
  );
  return timingSafeEqual(actual, expected);
}
