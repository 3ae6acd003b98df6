import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { Logger } from "pino";
import { afterAll, describe, expect, it, vi } from "vitest";
import type { JobService } from "../src/core/jobs.js";
import { startTestServer } from "./harness.js";

const JOBS = 40;

function newJob(uuid: string) {
  return {
    uuid,
    apiName: "createZone",
    accountUuid: null,
    userUuid: null,
    resourceUuid: null,
    request: {},
    timeoutMs: 60_000,
    idempotencyKey: null,
    requestHash: null,
    webhookUrl: null,
  };
}

describe("job progress", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "tstack-progress-"));

  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("is written when the server stops", async () => {
    const t = await startTestServer("sqlite", { dataDir });
    const jobs = t.server.core.jobs;
    const jobUuid = "a".repeat(32);
    await jobs.create(newJob(jobUuid));

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

  it("serializes overlapping batches on PostgreSQL", async () => {
    const t = await startTestServer("postgres");

    try {
      const jobs = t.server.core.jobs;
      const warn = vi.spyOn((jobs as unknown as { log: Logger }).log, "warn");
      const uuids = Array.from({ length: JOBS }, (_, index) =>
        index.toString(16).padStart(32, "0"),
      );

      for (const uuid of uuids) {
        await jobs.create(newJob(uuid));
      }

      // Each round starts a flush and, once its transaction has begun, a second one over the same
      // jobs in the opposite order. Two such transactions at once deadlocked on PostgreSQL.
      for (let round = 1; round <= 5; round++) {
        const first = writeRound(jobs, uuids, round * 10);
        await new Promise((started) => setImmediate(started));
        const second = writeRound(jobs, [...uuids].reverse(), round * 10 + 1);
        await Promise.all([first, second]);

        const rows = await t.server.core.db.kysely
          .selectFrom("apiJobs")
          .select(["uuid", "progress"])
          .where("uuid", "in", uuids)
          .execute();
        expect(rows.map((row) => Number(row.progress))).toEqual(uuids.map(() => round * 10 + 1));
      }

      expect(warn).not.toHaveBeenCalled();
    } finally {
      await t.stop();
    }
  });
});

function writeRound(jobs: JobService, uuids: string[], progress: number) {
  for (const uuid of uuids) {
    void jobs.progress(uuid, progress, `step ${progress}`);
  }

  return jobs.flushProgress();
}
