import type { Logger } from "pino";

/**
 * Runs periodic work in rounds that never overlap: each round starts a number of seconds after
 * the previous one ended. The number is read again before every wait, and `restartWait` starts
 * the current wait over, so a changed global configuration applies at once.
 */
export class Rounds {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly seconds: () => number,
    private readonly work: () => Promise<void>,
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

  /** Stops the rounds and waits for one that is running. */
  async stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private wait() {
    if (this.stopped) {
      return;
    }

    this.timer = setTimeout(() => void this.round(), this.seconds() * 1000);
    this.timer.unref();
  }

  private async round() {
    this.running = this.work().catch((error) =>
      this.log.error({ err: error }, `${this.what} failed`),
    );
    await this.running;
    this.running = undefined;
    this.wait();
  }
}
