import type { Kysely, Transaction } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.js";
import { newUuid, now } from "./ids.js";

/**
 * One step of a workflow. `data` is the workflow's JSON state, persisted after every step. A
 * step does its work in `run`, or in `runInTransaction` when that work is database writes only.
 */
export interface Step<D> {
  name: string;
  run?(data: D, signal: AbortSignal): Promise<void>;
  /**
   * Does the step's work in a transaction that also records the step as completed, so a crash
   * leaves both or neither. Transactional steps in a row share one transaction. When one of them
   * fails, its rollback and those of the steps before it run, so they must tolerate work that
   * never committed.
   */
  runInTransaction?(tx: Transaction<Database>, data: D): Promise<void>;
  /** Undoes the step's work. Must tolerate a run that stopped halfway, because a crash can cut one short. */
  rollback?(data: D): Promise<void>;
  /** Running it again after a crash is safe, so recovery may resume instead of rolling back. */
  resumable?: boolean;
}

/** A named chain of steps, registered at start-up so that recovery can find it after a crash. */
export interface WorkflowDefinition<D> {
  name: string;
  steps: Step<D>[];
  /** Builds the job result of a workflow that succeeded; recovery uses it for resumed runs. */
  result?(data: D): Promise<unknown>;
}

export interface WorkflowRun {
  jobUuid?: string;
  signal?: AbortSignal;
  /**
   * Writes done in the transaction that inserts the workflow row, such as the row of the
   * resource the workflow creates, so a crash cannot leave one without the other.
   */
  begin?(tx: Transaction<Database>): Promise<void>;
  onProgress?(done: number, total: number, stepName: string): void;
}

/** Outcome of a workflow that recovery finished, reported so its job can be ended. */
export interface RecoveredWorkflow {
  jobUuid: string | null;
  name: string;
  succeeded: boolean;
  result?: unknown;
  error?: string;
}

/** Raised by a workflow whose steps failed; `rolledBack` is true when every rollback worked. */
export class WorkflowError extends Error {
  constructor(
    message: string,
    readonly step: string,
    readonly rolledBack: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "WorkflowError";
  }
}

/** Runs work in one transaction. The management node's transactor also relays what it queued. */
export type Transactor = <T>(work: (tx: Transaction<Database>) => Promise<T>) => Promise<T>;

/** Returns the index after the run of transactional steps that starts at `start`. */
function transactionalRunEnd<D>(steps: Step<D>[], start: number) {
  let end = start;

  while (end < steps.length && steps[end]!.runInTransaction) {
    end++;
  }

  return end;
}

/** Debug hook for crash tests: milliseconds to wait before each step. Zero in production. */
const stepDelayMs = Number(process.env.TSTACK_TEST_WORKFLOW_STEP_DELAY_MS ?? "0");

/**
 * Runs workflows with persisted progress. A failed step rolls back the completed steps in
 * reverse order; after a crash, `recover` resumes or rolls back whatever was left running.
 */
export class WorkflowEngine {
  // biome-ignore lint/suspicious/noExplicitAny: definitions of any data type share one registry.
  private readonly definitions = new Map<string, WorkflowDefinition<any>>();

  /** Called when a run ends, with its duration in seconds; the server feeds a histogram. */
  onFinish: ((name: string, outcome: "succeeded" | "failed", seconds: number) => void) | undefined;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly nodeUuid: string,
    private readonly log: Logger,
    private readonly transact: Transactor = (work) => db.transaction().execute(work),
  ) {}

  register<D>(definition: WorkflowDefinition<D>) {
    this.definitions.set(definition.name, definition);
  }

  /** Runs a registered workflow to the end and returns its result, or throws a WorkflowError. */
  async run<D extends object>(name: string, data: D, options: WorkflowRun = {}): Promise<unknown> {
    const definition = this.definition<D>(name);
    const uuid = newUuid();
    const stamp = now();
    const row = {
      uuid,
      name,
      jobUuid: options.jobUuid ?? null,
      state: "Running",
      data: JSON.stringify(data),
      completedSteps: 0,
      managementNodeUuid: this.nodeUuid,
      error: null,
      createDate: stamp,
      lastOpDate: stamp,
    };

    if (options.begin) {
      const begin = options.begin;
      await this.transact(async (tx) => {
        await begin(tx);
        await tx.insertInto("workflows").values(row).execute();
      });
    } else {
      await this.db.insertInto("workflows").values(row).execute();
    }

    const started = performance.now();

    try {
      await this.runSteps(uuid, definition, data, 0, options);
    } catch (error) {
      this.onFinish?.(name, "failed", (performance.now() - started) / 1000);
      throw error;
    }

    this.onFinish?.(name, "succeeded", (performance.now() - started) / 1000);
    const result = await definition.result?.(data);
    await this.db
      .updateTable("workflows")
      .set({ state: "Done", lastOpDate: now() })
      .where("uuid", "=", uuid)
      .execute();
    return result;
  }

  private async runSteps<D>(
    uuid: string,
    definition: WorkflowDefinition<D>,
    data: D,
    from: number,
    options: WorkflowRun,
  ) {
    const steps = definition.steps;
    let index = from;

    while (index < steps.length) {
      const end = steps[index]!.runInTransaction ? transactionalRunEnd(steps, index) : index + 1;
      let current = index;

      try {
        if (stepDelayMs > 0) {
          await new Promise((resolve) => setTimeout(resolve, stepDelayMs));
        }

        options.signal?.throwIfAborted();

        if (steps[index]!.runInTransaction) {
          await this.transact(async (tx) => {
            for (; current < end; current++) {
              await steps[current]!.runInTransaction!(tx, data);
            }

            current = end - 1;
            await this.recordCompleted(tx, uuid, end, data);
          });
        } else {
          await steps[index]!.run!(data, options.signal ?? new AbortController().signal);
          await this.recordCompleted(this.db, uuid, end, data);
        }
      } catch (error) {
        const step = steps[current]!;
        const rolledBack = await this.rollback(uuid, definition, data, current, error);
        const reason = error instanceof Error ? error.message : String(error);
        throw new WorkflowError(
          `workflow ${definition.name} failed at step ${step.name}: ${reason}`,
          step.name,
          rolledBack,
          { cause: error },
        );
      }

      for (; index < end; index++) {
        options.onProgress?.(index + 1, steps.length, steps[index]!.name);
      }
    }
  }

  private async recordCompleted<D>(
    executor: Kysely<Database>,
    uuid: string,
    completedSteps: number,
    data: D,
  ) {
    await executor
      .updateTable("workflows")
      .set({ completedSteps, data: JSON.stringify(data), lastOpDate: now() })
      .where("uuid", "=", uuid)
      .execute();
  }

  /**
   * Rolls back steps `failedIndex` down to 0. The failed step itself is rolled back too,
   * because it may have done part of its work before it failed or the process died.
   */
  private async rollback<D>(
    uuid: string,
    definition: WorkflowDefinition<D>,
    data: D,
    failedIndex: number,
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    await this.db
      .updateTable("workflows")
      .set({ state: "RollingBack", error: reason, lastOpDate: now() })
      .where("uuid", "=", uuid)
      .execute();
    let clean = true;

    for (let index = failedIndex; index >= 0; index--) {
      const step = definition.steps[index]!;

      try {
        await step.rollback?.(data);
      } catch (error) {
        clean = false;
        this.log.error(
          { err: error, workflow: definition.name, workflowUuid: uuid, step: step.name },
          "workflow step rollback failed",
        );
      }

      await this.db
        .updateTable("workflows")
        .set({ completedSteps: index, lastOpDate: now() })
        .where("uuid", "=", uuid)
        .execute();
    }

    await this.db
      .updateTable("workflows")
      .set({ state: clean ? "RolledBack" : "RollbackFailed", lastOpDate: now() })
      .where("uuid", "=", uuid)
      .execute();
    return clean;
  }

  /**
   * Finishes every workflow a crash left unfinished: resumes it when all its remaining steps
   * are resumable, else rolls it back. Runs before the node accepts new work.
   */
  async recover(): Promise<RecoveredWorkflow[]> {
    const rows = await this.db
      .selectFrom("workflows")
      .selectAll()
      .where("state", "in", ["Running", "RollingBack"])
      .execute();
    const outcomes: RecoveredWorkflow[] = [];

    for (const row of rows) {
      outcomes.push(await this.recoverOne(row));
    }

    return outcomes;
  }

  private async recoverOne(row: Database["workflows"]): Promise<RecoveredWorkflow> {
    const definition = this.definitions.get(row.name);
    const base = { jobUuid: row.jobUuid, name: row.name };

    if (!definition) {
      await this.db
        .updateTable("workflows")
        .set({
          state: "RollbackFailed",
          error: "workflow definition not found at recovery",
          lastOpDate: now(),
        })
        .where("uuid", "=", row.uuid)
        .execute();
      return {
        ...base,
        succeeded: false,
        error: `workflow ${row.name} is unknown to this management node version`,
      };
    }

    const data = JSON.parse(row.data);
    const remaining = definition.steps.slice(row.completedSteps);
    const log = this.log.child({
      workflow: row.name,
      workflowUuid: row.uuid,
      jobUuid: row.jobUuid,
    });

    if (row.state === "Running" && remaining.every((step) => step.resumable)) {
      log.info({ completedSteps: row.completedSteps }, "resuming workflow after restart");

      try {
        await this.runSteps(row.uuid, definition, data, row.completedSteps, {});
        const result = await definition.result?.(data);
        await this.db
          .updateTable("workflows")
          .set({ state: "Done", lastOpDate: now() })
          .where("uuid", "=", row.uuid)
          .execute();
        return { ...base, succeeded: true, result };
      } catch (error) {
        return {
          ...base,
          succeeded: false,
          error: error instanceof Error ? error.message : String(error),
        };
      }
    }

    log.info(
      { completedSteps: row.completedSteps },
      "rolling back workflow left unfinished by a restart",
    );
    const failedIndex = Math.min(row.completedSteps, definition.steps.length - 1);
    await this.rollback(
      row.uuid,
      definition,
      data,
      failedIndex,
      new Error("the management node restarted during the workflow"),
    );
    return {
      ...base,
      succeeded: false,
      error: `the management node restarted during ${row.name}; the operation was rolled back`,
    };
  }

  private definition<D>(name: string): WorkflowDefinition<D> {
    const definition = this.definitions.get(name);

    if (!definition) {
      throw new Error(`workflow ${name} is not registered`);
    }

    return definition;
  }
}
