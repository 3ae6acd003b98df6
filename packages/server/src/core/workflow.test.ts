import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Transaction } from "kysely";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Db, openDatabase } from "../db/connect.js";
import type { Database } from "../db/schema.js";
import { WorkflowEngine, WorkflowError } from "./workflow.js";

interface Data {
  log: string[];
}

describe("workflow engine", () => {
  let dir: string;
  let db: Db;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "tstack-workflow-"));
    db = await openDatabase(join(dir, "test.db"));
  });

  afterEach(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function engine(effects: string[], failAt?: string) {
    const workflows = new WorkflowEngine(db.kysely, "node", pino({ level: "silent" }));
    const step = (name: string, resumable = false) => ({
      name,
      resumable,
      async run(data: Data) {
        if (name === failAt) {
          effects.push(`half-${name}`);
          throw new Error(`${name} broke`);
        }

        effects.push(`run-${name}`);
        data.log.push(name);
      },
      async rollback() {
        effects.push(`undo-${name}`);
      },
    });
    workflows.register<Data>({
      name: "three",
      steps: [step("a"), step("b"), step("c")],
      result: async (data) => data.log,
    });
    workflows.register<Data>({
      name: "resumable",
      steps: [step("x", true), step("y", true)],
      result: async (data) => data.log,
    });
    return workflows;
  }

  it("runs steps in order and persists the result", async () => {
    const effects: string[] = [];
    const result = await engine(effects).run("three", { log: [] });
    expect(result).toEqual(["a", "b", "c"]);
    const row = await db.kysely.selectFrom("workflows").selectAll().executeTakeFirstOrThrow();
    expect(row.state).toBe("Done");
    expect(row.completedSteps).toBe(3);
  });

  it("rolls back the failed step and the completed ones in reverse", async () => {
    const effects: string[] = [];
    const error = await engine(effects, "c")
      .run("three", { log: [] })
      .catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(WorkflowError);
    expect((error as WorkflowError).step).toBe("c");
    expect((error as WorkflowError).rolledBack).toBe(true);
    expect(effects).toEqual(["run-a", "run-b", "half-c", "undo-c", "undo-b", "undo-a"]);
    const row = await db.kysely.selectFrom("workflows").selectAll().executeTakeFirstOrThrow();
    expect(row.state).toBe("RolledBack");
    expect(row.completedSteps).toBe(0);
  });

  it("stops at a step boundary when aborted", async () => {
    const effects: string[] = [];
    const controller = new AbortController();
    controller.abort(new Error("cancelled"));
    await expect(
      engine(effects).run("three", { log: [] }, { signal: controller.signal }),
    ).rejects.toThrow(/cancelled/);
    expect(effects).toEqual(["undo-a"]);
  });

  it("rolls back an interrupted workflow at recovery", async () => {
    const stamp = new Date().toISOString();
    await db.kysely
      .insertInto("workflows")
      .values({
        uuid: "w1",
        name: "three",
        jobUuid: "j1",
        state: "Running",
        data: JSON.stringify({ log: ["a"] }),
        completedSteps: 1,
        managementNodeUuid: "node",
        error: null,
        createDate: stamp,
        lastOpDate: stamp,
      })
      .execute();
    const effects: string[] = [];
    const outcomes = await engine(effects).recover();
    expect(outcomes).toEqual([
      {
        jobUuid: "j1",
        name: "three",
        succeeded: false,
        error: expect.stringMatching(/rolled back/),
      },
    ]);
    expect(effects).toEqual(["undo-b", "undo-a"]);
    const row = await db.kysely.selectFrom("workflows").selectAll().executeTakeFirstOrThrow();
    expect(row.state).toBe("RolledBack");
  });

  it("resumes an interrupted workflow whose remaining steps are resumable", async () => {
    const stamp = new Date().toISOString();
    await db.kysely
      .insertInto("workflows")
      .values({
        uuid: "w2",
        name: "resumable",
        jobUuid: "j2",
        state: "Running",
        data: JSON.stringify({ log: ["x"] }),
        completedSteps: 1,
        managementNodeUuid: "node",
        error: null,
        createDate: stamp,
        lastOpDate: stamp,
      })
      .execute();
    const effects: string[] = [];
    const outcomes = await engine(effects).recover();
    expect(outcomes).toEqual([
      { jobUuid: "j2", name: "resumable", succeeded: true, result: ["x", "y"] },
    ]);
    expect(effects).toEqual(["run-y"]);
  });

  it("rolls back a failed begin", async () => {
    const effects: string[] = [];
    const error = await engine(effects)
      .run(
        "three",
        { log: [] },
        {
          async begin(tx) {
            await tx
              .insertInto("resources")
              .values({
                uuid: "vm",
                resourceType: "VmInstance",
                name: "vm",
                accountUuid: "account",
                createDate: "2026-01-01T00:00:00.000Z",
              })
              .execute();
            throw new Error("quota exceeded");
          },
        },
      )
      .catch((failure: unknown) => failure);
    expect((error as Error).message).toBe("quota exceeded");
    expect(effects).toEqual([]);
    expect(await db.kysely.selectFrom("resources").selectAll().execute()).toEqual([]);
    expect(await db.kysely.selectFrom("workflows").selectAll().execute()).toEqual([]);
  });

  describe("transactional steps", () => {
    /** A plain step `a`, then `b` and `c`, which insert a tag row each in one transaction. */
    function transactional(effects: string[], failAt?: string) {
      const workflows = new WorkflowEngine(db.kysely, "node", pino({ level: "silent" }));
      const step = (name: string) => ({
        name,
        async runInTransaction(tx: Transaction<Database>, data: Data) {
          await tx
            .insertInto("tags")
            .values({
              uuid: `tag-${name}`,
              resourceUuid: "vm",
              resourceType: "VmInstance",
              tag: name,
              type: "System",
              inherent: 0,
              accountUuid: "account",
              createDate: "2026-01-01T00:00:00.000Z",
              lastOpDate: "2026-01-01T00:00:00.000Z",
            })
            .execute();

          if (name === failAt) {
            throw new Error(`${name} broke`);
          }

          effects.push(`run-${name}`);
          data.log.push(name);
        },
        async rollback() {
          effects.push(`undo-${name}`);
        },
      });
      const plain = {
        name: "a",
        async run(data: Data) {
          effects.push("run-a");
          data.log.push("a");
        },
        async rollback() {
          effects.push("undo-a");
        },
      };
      workflows.register<Data>({ name: "mixed", steps: [plain, step("b"), step("c")] });
      return workflows;
    }

    async function tags() {
      const rows = await db.kysely.selectFrom("tags").select("tag").orderBy("tag").execute();
      return rows.map((row) => row.tag);
    }

    it("commits a run with its completion", async () => {
      const effects: string[] = [];
      await transactional(effects).run("mixed", { log: [] });
      expect(effects).toEqual(["run-a", "run-b", "run-c"]);
      expect(await tags()).toEqual(["b", "c"]);
      const row = await db.kysely.selectFrom("workflows").selectAll().executeTakeFirstOrThrow();
      expect(row.completedSteps).toBe(3);
      expect(JSON.parse(row.data)).toEqual({ log: ["a", "b", "c"] });
    });

    it("rolls back the shared transaction", async () => {
      const effects: string[] = [];
      const error = await transactional(effects, "c")
        .run("mixed", { log: [] })
        .catch((failure: unknown) => failure);
      expect((error as WorkflowError).step).toBe("c");
      expect(effects).toEqual(["run-a", "run-b", "undo-c", "undo-b", "undo-a"]);
      expect(await tags()).toEqual([]);
      const row = await db.kysely.selectFrom("workflows").selectAll().executeTakeFirstOrThrow();
      expect(row.state).toBe("RolledBack");
    });
  });
});
