import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Maximum opened secrets kept; the oldest goes first. Each host has one agent secret. */
const OPENED_CACHE_SIZE = 100_000;

/**
 * Encrypts secrets kept in the database (agent secrets, SSH credentials) with AES-256-GCM under
 * a key in the data directory, so a copy of the database alone does not give them away.
 */
export class SecretBox {
  /**
   * Opened secrets by sealed text. A sealed text opens to one plaintext under this key, so
   * entries never go stale. Every command to a host opens its agent secret, and deciphering
   * took about 1% of the server's CPU in a profile of the control-plane benchmark.
   */
  private readonly opened = new Map<string, string>();

  private constructor(private readonly key: Buffer) {}

  /** Loads the key from `<dataDir>/secret.key`, creating it (mode 0600) on first start. */
  static open(dataDir: string): SecretBox {
    const path = join(dataDir, "secret.key");

    if (!existsSync(path)) {
      writeFileSync(path, randomBytes(32).toString("hex"), { mode: 0o600 });
    }

    const key = Buffer.from(readFileSync(path, "utf8").trim(), "hex");

    if (key.length !== 32) {
      throw new Error(`${path} must hold 64 hex characters (a 256-bit key)`);
    }

    return new SecretBox(key);
  }

  seal(text: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    const sealed = Buffer.concat([cipher.update(text, "utf8"), cipher.final()]);
    return `v1.${iv.toString("base64")}.${cipher.getAuthTag().toString("base64")}.${sealed.toString("base64")}`;
  }

  open(sealed: string): string {
    let text = this.opened.get(sealed);

    if (text === undefined) {
      text = this.decrypt(sealed);

      if (this.opened.size >= OPENED_CACHE_SIZE) {
        this.opened.delete(this.opened.keys().next().value as string);
      }

      this.opened.set(sealed, text);
    }

    return text;
  }

  private decrypt(sealed: string): string {
    const [version, iv, tag, data] = sealed.split(".");

    if (version !== "v1" || !iv || !tag || !data) {
      throw new Error("sealed secret has an unknown format");
    }

    const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64"));
    decipher.setAuthTag(Buffer.from(tag, "base64"));
    return Buffer.concat([decipher.update(Buffer.from(data, "base64")), decipher.final()]).toString(
      "utf8",
    );
  }
}
