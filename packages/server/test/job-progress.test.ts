import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { startTestServer } from "./harness.js";

describe("job progress", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "tstack-progress-"));

  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("is written when the server stops", async () => {
    const t = await startTestServer("sqlite", { dataDir });
    const jobs = t.server.core.jobs;
    const jobUuid = "a".repeat(32);
    await jobs.create({
      uuid: jobUuid,
      apiName: "createZone",
      accountUuid: null,
      userUuid: null,
      resourceUuid: null,
      request: {},
      timeoutMs: 60_000,
      idempotencyKey: null,
      requestHash: null,
      webhookUrl: null,
    });

    // The write waits for its batch, and the stop must write what is still waiting.
    await jobs.progress(jobUuid, 40, "allocating the host");
    await t.stop();

    const database = new Database(join(dataDir, "tstack.db"), { readonly: true });
    const row = database
      .prepare("select progress, progressText from apiJobs where uuid = ?")
      .get(jobUuid) as { progress: number; progressText: string };
    database.close();

    expect(row.progress).toBe(40);
    expect(row.progressText).toBe("allocating the host");
  });
});
