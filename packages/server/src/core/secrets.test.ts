import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SecretBox } from "./secrets.js";

describe("secret box", () => {
  let dir: string;
  let box: SecretBox;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "tstack-secrets-"));
    box = SecretBox.open(dir);
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("opens a sealed text repeatedly", () => {
    const sealed = box.seal("agent secret");
    expect(box.open(sealed)).toBe("agent secret");
    expect(box.open(sealed)).toBe("agent secret");
  });

  it("rejects a tampered text after an open", () => {
    const sealed = box.seal("agent secret");
    expect(box.open(sealed)).toBe("agent secret");
    const [version, iv, tag, data] = sealed.split(".");
    const flipped = Buffer.from(data!, "base64");
    flipped[0]! ^= 1;
    expect(() => box.open([version, iv, tag, flipped.toString("base64")].join("."))).toThrow();
  });

  it("rejects a text of another key", () => {
    const otherDir = mkdtempSync(join(tmpdir(), "tstack-secrets-"));

    try {
      const sealed = SecretBox.open(otherDir).seal("agent secret");
      expect(() => box.open(sealed)).toThrow();
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });
});
