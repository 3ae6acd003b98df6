import { setTimeout as sleep } from "node:timers/promises";
import { signRequest } from "@tstack/agent/auth";
import type { Logger } from "pino";

const ATTEMPTS = 5;
const FIRST_BACKOFF_MS = 200;
const ATTEMPT_TIMEOUT_MS = 10_000;

/**
 * POSTs signed task results and VM state reports to the management node, with the headers the
 * real agent uses (`taskuuid`, `commandpath`) and retries with doubling backoff.
 */
export class Callbacks {
  #stopped = false;

  constructor(private readonly log: Logger) {}

  /** Sends the result of an asynchronous command to its callback URL. */
  complete(url: string, secret: string, taskUuid: string, result: object) {
    void this.#post(url, secret, { taskuuid: taskUuid }, result);
  }

  /** Sends a VM state report to a host's sendCommandUrl. */
  report(url: string, secret: string, report: { vmUuid: string; state: string; reason: string }) {
    void this.#post(url, secret, { commandpath: "/vm/report/state" }, report);
  }

  /** Sends nothing more, including retries in flight. */
  stop() {
    this.#stopped = true;
  }

  async #post(url: string, secret: string, headers: Record<string, string>, body: object) {
    const text = JSON.stringify(body);
    const target = new URL(url);
    let backoff = FIRST_BACKOFF_MS;

    for (let attempt = 1; attempt <= ATTEMPTS && !this.#stopped; attempt++) {
      try {
        const response = await fetch(target, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...headers,
            ...signRequest(secret, "POST", target.pathname + target.search, text),
          },
          body: text,
          signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
        });
        await response.arrayBuffer();

        // 404 means no call waits for this task any more (it timed out), so a retry cannot help.
        if (response.ok || response.status === 404) {
          return;
        }

        this.log.warn({ url, status: response.status, attempt }, "management node rejected a POST");
      } catch (error) {
        this.log.warn({ url, err: error, attempt }, "POST to the management node failed");
      }

      await sleep(backoff);
      backoff *= 2;
    }

    if (!this.#stopped) {
      this.log.error({ url, attempts: ATTEMPTS }, "gave up POSTing to the management node");
    }
  }
}
