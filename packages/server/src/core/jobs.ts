import type { ErrorBody } from "@tstack/api";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.js";
import { type Executor, queueDelivery } from "./events.js";
import { now } from "./ids.js";

/**
 * Time a progress write waits for other progress. Without it a VM create wrote its progress five
 * times, each in a commit of its own.
 */
const PROGRESS_FLUSH_MS = 100;

/** A job's end: the HTTP status and body that polling returns from then on. */
export interface JobOutcome {
  status: 200 | 503;
  body: unknown;
}

export interface NewJob {
  uuid: string;
  apiName: string;
  accountUuid: string | null;
  userUuid: string | null;
  resourceUuid: string | null;
  request: unknown;
  timeoutMs: number;
  idempotencyKey: string | null;
  requestHash: string | null;
  webhookUrl: string | null;
}

/** Builds the 503 outcome of a failed job from a ZStack error body. */
export function failure(error: ErrorBody): JobOutcome {
  return { status: 503, body: { error } };
}

/**
 * Async API jobs: each write API is a row with an owner node, a state and a deadline. The row
 * is what polling reads, and ending it queues the `X-Web-Hook` callback in the same transaction.
 */
export class JobService {
  private readonly controllers = new Map<string, AbortController>();
  /** Long polls waiting for a job of this node to end, woken by `untrack`. */
  private readonly waiters = new Map<string, Array<() => void>>();
  /** The latest progress of each job that the next flush writes. */
  private readonly pendingProgress = new Map<string, { progress: number; text: string }>();
  private progressTimer: NodeJS.Timeout | undefined;
  /** The running or last flush. The next flush starts after it ends. */
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly nodeUuid: string,
    private readonly log: Logger,
  ) {}

  /** Inserts the job row; throws the database's unique violation for a reused job uuid. */
  async create(job: NewJob) {
    const stamp = now();
    await this.db
      .insertInto("apiJobs")
      .values({
        uuid: job.uuid,
        apiName: job.apiName,
        state: "Running",
        accountUuid: job.accountUuid,
        userUuid: job.userUuid,
        resourceUuid: job.resourceUuid,
        request: JSON.stringify(job.request),
        result: null,
        httpStatus: null,
        progress: null,
        progressText: null,
        managementNodeUuid: this.nodeUuid,
        idempotencyKey: job.idempotencyKey,
        requestHash: job.requestHash,
        webhookUrl: job.webhookUrl,
        cancelRequested: 0,
        deadline: new Date(Date.now() + job.timeoutMs).toISOString(),
        createDate: stamp,
        lastOpDate: stamp,
        finishDate: null,
      })
      .execute();
  }

  /** Returns the abort signal that a running job's work watches for cancel and deadline. */
  track(jobUuid: string, timeoutMs: number): AbortSignal {
    const controller = new AbortController();
    this.controllers.set(jobUuid, controller);
    const timer = setTimeout(() => controller.abort(new JobTimeoutError(timeoutMs)), timeoutMs);
    timer.unref();
    controller.signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
    return controller.signal;
  }

  /** Forgets a job whose end is committed, and wakes the long polls waiting for it. */
  untrack(jobUuid: string) {
    this.controllers.delete(jobUuid);
    this.wake(jobUuid);
  }

  /** Wakes the long polls of a job whose end is committed. */
  wake(jobUuid: string) {
    const waiting = this.waiters.get(jobUuid);
    this.waiters.delete(jobUuid);

    for (const wake of waiting ?? []) {
      wake();
    }
  }

  /**
   * Waits until a job running in this process ends or `ms` pass. Resolves at once for a job
   * this process does not run, because no `untrack` would wake the wait.
   */
  waitForEnd(jobUuid: string, ms: number): Promise<void> {
    if (!this.controllers.has(jobUuid) || ms <= 0) {
      return Promise.resolve();
    }

    return new Promise((resolve) => {
      const waiting = this.waiters.get(jobUuid) ?? [];
      const timer = setTimeout(() => {
        const index = waiting.indexOf(wake);

        if (index >= 0) {
          waiting.splice(index, 1);
        }

        resolve();
      }, ms);
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      waiting.push(wake);
      this.waiters.set(jobUuid, waiting);
    });
  }

  /**
   * Ends a running job in the caller's transaction. Only the first end counts, so a job that
   * timed out is never overwritten by work that finished late. Returns whether this call ended it.
   */
  async finish(tx: Executor, jobUuid: string, outcome: JobOutcome): Promise<boolean> {
    const stamp = now();
    const body = JSON.stringify(outcome.body);
    const updated = await tx
      .updateTable("apiJobs")
      .set({
        state: outcome.status === 200 ? "Succeeded" : "Failed",
        result: body,
        httpStatus: outcome.status,
        finishDate: stamp,
        lastOpDate: stamp,
        progress: outcome.status === 200 ? 100 : null,
      })
      .where("uuid", "=", jobUuid)
      .where("state", "=", "Running")
      .executeTakeFirst();

    if (Number(updated.numUpdatedRows) === 0) {
      return false;
    }

    const success = outcome.status === 200;
    const error = success
      ? null
      : JSON.stringify((outcome.body as { error?: unknown }).error ?? null);
    await tx
      .updateTable("audits")
      .set({ success: success ? 1 : 0, error, finishDate: stamp })
      .where("jobUuid", "=", jobUuid)
      .execute();

    const job = await tx
      .selectFrom("apiJobs")
      .select("webhookUrl")
      .where("uuid", "=", jobUuid)
      .executeTakeFirst();

    if (job?.webhookUrl) {
      const headers = {
        "content-type": "application/json",
        "X-Job-UUID": jobUuid,
        "X-Job-Success": String(success),
      };
      await queueDelivery(tx, job.webhookUrl, headers, body);
    }

    return true;
  }

  /**
   * Records a running job's progress and returns at once. The write waits up to
   * `PROGRESS_FLUSH_MS`, so that a job's later progress replaces its earlier one and the writes
   * of all jobs share one commit. A failed write is logged, not raised.
   */
  async progress(jobUuid: string, progress: number, text: string) {
    this.pendingProgress.set(jobUuid, { progress, text });
    this.progressTimer ??= setTimeout(() => void this.flushProgress(), PROGRESS_FLUSH_MS);
  }

  /**
   * Writes the progress still waiting for its batch now; the server calls it when it stops.
   * Flushes run one at a time. On PostgreSQL two batches that updated the same jobs in other
   * orders deadlocked, and a job whose end waited on them failed with "deadlock detected".
   */
  flushProgress() {
    clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    this.flushing = this.flushing.then(() => this.writeProgress());
    return this.flushing;
  }

  /** Writes the waiting progress in one transaction, in job uuid order. */
  private async writeProgress() {
    if (this.pendingProgress.size === 0) {
      return;
    }

    const pending = [...this.pendingProgress].sort(([left], [right]) => left.localeCompare(right));
    this.pendingProgress.clear();
    const stamp = now();

    try {
      await this.db.transaction().execute(async (tx) => {
        for (const [jobUuid, { progress, text }] of pending) {
          await tx
            .updateTable("apiJobs")
            .set({ progress, progressText: text, lastOpDate: stamp })
            .where("uuid", "=", jobUuid)
            .where("state", "=", "Running")
            .execute();
        }
      });
    } catch (error) {
      this.log.warn({ err: error, jobs: pending.length }, "writing job progress failed");
    }
  }

  /** Asks a running job to stop; its work rolls back at its next step boundary. */
  async cancel(jobUuid: string): Promise<boolean> {
    const updated = await this.db
      .updateTable("apiJobs")
      .set({ cancelRequested: 1, lastOpDate: now() })
      .where("uuid", "=", jobUuid)
      .where("state", "=", "Running")
      .executeTakeFirst();
    this.controllers.get(jobUuid)?.abort(new JobCancelledError());
    return Number(updated.numUpdatedRows) > 0;
  }

  /** Running jobs that this node owns; after a restart they have no work behind them. */
  async orphans() {
    return this.db
      .selectFrom("apiJobs")
      .select(["uuid", "apiName"])
      .where("state", "=", "Running")
      .where("managementNodeUuid", "=", this.nodeUuid)
      .execute();
  }

  /** Running jobs past their deadline whose work is not in this process (lost timers). */
  async overdue() {
    const rows = await this.db
      .selectFrom("apiJobs")
      .select(["uuid", "apiName", "deadline"])
      .where("state", "=", "Running")
      .where("deadline", "<", now())
      .execute();
    return rows.filter((row) => !this.controllers.has(row.uuid));
  }

  /** Deletes finished jobs older than `maxAgeMs`; polling them then returns 404. */
  async expire(maxAgeMs: number) {
    const cutoff = new Date(Date.now() - maxAgeMs).toISOString();
    const deleted = await this.db
      .deleteFrom("apiJobs")
      .where("state", "!=", "Running")
      .where("finishDate", "<", cutoff)
      .executeTakeFirst();
    const count = Number(deleted.numDeletedRows);

    if (count > 0) {
      this.log.info({ count }, "expired finished API jobs");
    }
  }
}

export class JobTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`the job did not finish within its API timeout of ${timeoutMs} ms`);
    this.name = "JobTimeoutError";
  }
}

export class JobCancelledError extends Error {
  constructor() {
    super("the job was cancelled by a cancelApiJob request");
    this.name = "JobCancelledError";
  }
}
