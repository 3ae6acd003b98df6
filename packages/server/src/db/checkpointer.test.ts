import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { until } from "../../test/harness.js";
import { type Db, openDatabase } from "./connect.js";

describe("WAL checkpointer", () => {
  let dir: string;
  let db: Db;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "tstack-checkpoint-"));
    db = await openDatabase(join(dir, "tstack.db"));
  });

  afterEach(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("copies committed pages into the database file", async () => {
    const file = join(dir, "tstack.db");
    const before = statSync(file).size;
    const stamp = new Date().toISOString();

    // About 2 MiB of tags: far below the main connection's own checkpoint threshold.
    for (let index = 0; index < 200; index++) {
      await db.kysely
        .insertInto("tags")
        .values({
          uuid: `tag${String(index).padStart(29, "0")}`,
          resourceUuid: "vm",
          resourceType: "VmInstance",
          tag: "x".repeat(10_000),
          type: "System",
          inherent: 0,
          accountUuid: "account",
          createDate: stamp,
          lastOpDate: stamp,
        })
        .execute();
    }

    const size = await until(
      async () => statSync(file).size,
      (bytes) => bytes > before + 1_000_000,
      "the checkpoint of the worker",
    );
    expect(size).toBeGreaterThan(before + 1_000_000);
  });
});
