import type { Logger } from "pino";

/**
 * Result of one retry: `pushed` clears the host, `failed` arms the next retry with a longer delay,
 * and `skipped` drops the retry because the host is gone or not connected (its reconnect pushes
 * again).
 */
export type RetryOutcome = "pushed" | "failed" | "skipped";

export interface RetryOptions {
  /** Delay before the first retry, in ms; each further failure doubles it. */
  initialDelayMs: number;
  /** Upper bound of the delay, in ms. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY_OPTIONS: RetryOptions = { initialDelayMs: 1000, maxDelayMs: 60_000 };

interface Entry {
  /** Failures since the host's last successful push, which sets the next delay. */
  failures: number;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
  /** Set when a push fails while a retry runs, so a success of that retry does not end it. */
  failedMeanwhile: boolean;
}

/**
 * Background retries of security-group pushes, at most one pending per host. The retry itself
 * (`push`) recomputes and sends the host's full rule set when it runs, so a retry never sends an
 * older set than a push before it.
 */
export class HostPushRetries {
  private readonly entries = new Map<string, Entry>();
  private stopped = false;

  constructor(
    private readonly push: (hostUuid: string) => Promise<RetryOutcome>,
    private readonly log: Logger,
    private readonly options: RetryOptions = DEFAULT_RETRY_OPTIONS,
  ) {}

  /** Records a failed push to a host and arms a retry unless one is already pending. */
  failed(hostUuid: string) {
    if (this.stopped) {
      return;
    }

    const entry = this.entries.get(hostUuid) ?? { failures: 0, failedMeanwhile: false };
    this.entries.set(hostUuid, entry);

    if (entry.running) {
      entry.failedMeanwhile = true;
      return;
    }

    if (entry.timer === undefined) {
      entry.failures += 1;
      this.arm(hostUuid, entry);
    }
  }

  /** Drops the pending retry of a host, such as a deleted one. A retry already running finishes. */
  cancel(hostUuid: string) {
    const entry = this.entries.get(hostUuid);
    clearTimeout(entry?.timer);
    this.entries.delete(hostUuid);
  }

  /** Hosts with a retry pending or running. */
  pendingHosts() {
    return [...this.entries.keys()];
  }

  /** Delay before the retry after `failures` failed pushes, in ms. */
  delayAfter(failures: number) {
    const exponent = Math.min(Math.max(failures - 1, 0), 30);
    return Math.min(this.options.maxDelayMs, this.options.initialDelayMs * 2 ** exponent);
  }

  /** Cancels every pending retry and waits for the running ones; nothing is armed afterwards. */
  async stop() {
    this.stopped = true;
    const running = [...this.entries.values()].flatMap((entry) => entry.running ?? []);

    for (const entry of this.entries.values()) {
      clearTimeout(entry.timer);
    }

    this.entries.clear();
    await Promise.all(running);
  }

  private arm(hostUuid: string, entry: Entry) {
    const delayMs = this.delayAfter(entry.failures);
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      entry.running = this.run(hostUuid, entry);
    }, delayMs);
    entry.timer.unref();
    this.log.info(
      { hostUuid, failures: entry.failures, delayMs },
      "security group push to host failed; retry armed",
    );
  }

  private async run(hostUuid: string, entry: Entry) {
    entry.failedMeanwhile = false;
    const outcome = await this.push(hostUuid).catch((error: unknown) => {
      this.log.warn({ err: error, hostUuid }, "security group push retry raised");
      return "failed" as const;
    });
    entry.running = undefined;

    // A cancel or stop while the push ran ends the retries of this host.
    if (this.stopped || this.entries.get(hostUuid) !== entry) {
      return;
    }

    if (outcome === "skipped" || (outcome === "pushed" && !entry.failedMeanwhile)) {
      this.entries.delete(hostUuid);
      return;
    }

    entry.failures = outcome === "pushed" ? 1 : entry.failures + 1;
    this.arm(hostUuid, entry);
  }
}
