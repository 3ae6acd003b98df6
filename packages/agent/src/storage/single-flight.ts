/**
 * Runs at most one operation per key at a time: callers that arrive while one runs share its
 * result, so for example concurrent requests for one image copy it once.
 */
export class SingleFlight<T> {
  private readonly running = new Map<string, Promise<T>>();

  /** Returns the running operation for `key`, or starts `operation` and shares it. */
  run(key: string, operation: () => Promise<T>): Promise<T> {
    const current = this.running.get(key);

    if (current) {
      return current;
    }

    const started = operation().finally(() => this.running.delete(key));
    this.running.set(key, started);
    return started;
  }
}
