import type { Logger } from "pino";

/**
 * Runs periodic work in rounds that never overlap: each round starts an interval after the
 * previous one ended. The interval is read again before every wait, and `restartWait` starts the
 * current wait over, so a changed global configuration applies at once.
 */
export class Rounds {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly stopping = new AbortController();

  constructor(
    private readonly intervalMs: () => number,
    /** One round. It should return soon after `signal` aborts, which `stop` does. */
    private readonly work: (signal: AbortSignal) => Promise<void>,
    private readonly log: Logger,
    private readonly what: string,
  ) {}

  start() {
    this.wait();
  }

  /** Starts the wait for the next round over with the current interval; a round keeps running. */
  restartWait() {
    if (this.running === undefined) {
      clearTimeout(this.timer);
      this.wait();
    }
  }

  /** Stops the rounds, aborts the signal of a running round and waits for that round to end. */
  async stop() {
    this.stopping.abort();
    clearTimeout(this.timer);
    await this.running;
  }

  private wait() {
    if (this.stopping.signal.aborted) {
      return;
    }

    this.timer = setTimeout(() => void this.round(), this.intervalMs());
    this.timer.unref();
  }

  private async round() {
    this.running = this.work(this.stopping.signal).catch((error) =>
      this.log.error({ err: error }, `${this.what} failed`),
    );
    await this.running;
    this.running = undefined;
    this.wait();
  }
}
