import type { Logger } from "pino";
import { COMMAND_PATH_HEADER, VM_REPORT_PATH, type VmStateReport } from "../protocol.js";
import { postSigned } from "./signed-post.js";

/**
 * Sends VM state reports to the management node's sendCommandUrl. Reports made before the first
 * `/host/connect` wait in memory and go out once the URL is known.
 */
export class Reporter {
  #url: string | undefined;
  #waiting: VmStateReport[] = [];
  readonly #secret: () => string;
  readonly #log: Logger;

  constructor(secret: () => string, logger: Logger) {
    this.#secret = secret;
    this.#log = logger.child({ component: "reporter" });
  }

  /** Sets the report URL and sends the reports that waited for it. */
  setUrl(url: string) {
    this.#url = url;
    const waiting = this.#waiting;
    this.#waiting = [];

    for (const report of waiting) {
      this.send(report);
    }
  }

  /** Sends one report in the background, with retries. */
  send(report: VmStateReport) {
    const url = this.#url;

    if (!url) {
      this.#log.warn({ vmUuid: report.vmUuid }, "no sendCommandUrl yet; report waits for connect");
      this.#waiting.push(report);
      return;
    }

    this.#log.info({ ...report }, "reporting VM state");
    void postSigned(url, report, {
      secret: this.#secret(),
      headers: { [COMMAND_PATH_HEADER]: VM_REPORT_PATH },
      logger: this.#log,
    });
  }
}
