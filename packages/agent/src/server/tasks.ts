import type { Logger } from "pino";
import type { AgentResponse } from "../protocol.js";
import { TASK_UUID_HEADER } from "../protocol.js";
import { postSigned } from "./signed-post.js";

interface Task {
  callbackUrl: string;
  result?: AgentResponse;
}

/** Settings of a TaskRunner. */
export interface TaskRunnerOptions {
  /** Returns the current host secret for signing callbacks. */
  secret: () => string;
  logger: Logger;
  /** Finished tasks remembered for repeats; 1000 by default. */
  maxTasks?: number;
  /** Delay before the first callback retry in ms. */
  backoffMs?: number;
}

/**
 * Runs asynchronous commands once per taskuuid and POSTs each result to its callback URL.
 * A repeat of a running task is ignored; a repeat of a finished task re-sends its result.
 */
export class TaskRunner {
  readonly #tasks = new Map<string, Task>();
  readonly #options: TaskRunnerOptions;

  constructor(options: TaskRunnerOptions) {
    this.#options = options;
  }

  /** Starts `work` for a new taskuuid; returns false when the taskuuid was seen before. */
  submit(taskUuid: string, callbackUrl: string, work: () => Promise<object | undefined>) {
    const existing = this.#tasks.get(taskUuid);
    const log = this.#options.logger.child({ taskUuid });

    if (existing) {
      if (existing.result) {
        log.info("repeated task already finished; sending its result again");
        void this.#callback(taskUuid, callbackUrl, existing.result);
      } else {
        log.info("repeated task still running; ignoring the repeat");
      }

      return false;
    }

    const task: Task = { callbackUrl };
    this.#tasks.set(taskUuid, task);
    this.#evict();

    void this.#run(work, log).then((result) => {
      task.result = result;
      return this.#callback(taskUuid, task.callbackUrl, result);
    });

    return true;
  }

  /** Returns whether this process received the taskuuid, which is false after a restart. */
  has(taskUuid: string) {
    return this.#tasks.has(taskUuid);
  }

  /** Number of remembered tasks, running or finished. */
  get size() {
    return this.#tasks.size;
  }

  async #run(work: () => Promise<object | undefined>, log: Logger): Promise<AgentResponse> {
    try {
      const value = await work();
      log.debug("task succeeded");
      return { success: true, ...value };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log.warn({ err: error }, "task failed");
      return { success: false, error: message };
    }
  }

  #callback(taskUuid: string, url: string, result: AgentResponse) {
    const options = {
      secret: this.#options.secret(),
      headers: { [TASK_UUID_HEADER]: taskUuid },
      logger: this.#options.logger.child({ taskUuid }),
    };

    return postSigned(url, result, { ...options, backoffMs: this.#options.backoffMs ?? 500 });
  }

  #evict() {
    const max = this.#options.maxTasks ?? 1000;

    for (const [taskUuid, task] of this.#tasks) {
      if (this.#tasks.size <= max) {
        return;
      }

      if (task.result) {
        this.#tasks.delete(taskUuid);
      }
    }
  }
}
