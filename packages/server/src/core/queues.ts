/**
 * Keyed task queues: tasks with the same key run one after another (or up to `concurrency` at
 * once), so two operations on one resource never interleave. Tasks on other keys run freely.
 */
export class KeyedQueue {
  private readonly queues = new Map<string, { running: number; waiting: Array<() => void> }>();

  /** Number of tasks running or waiting, over all keys. */
  get depth() {
    let total = 0;

    for (const queue of this.queues.values()) {
      total += queue.running + queue.waiting.length;
    }

    return total;
  }

  /** Whether a task with this key is running or waiting. */
  isBusy(key: string) {
    return this.queues.has(key);
  }

  async run<T>(key: string, task: () => Promise<T>, concurrency = 1): Promise<T> {
    await this.acquire(key, concurrency);

    try {
      return await task();
    } finally {
      this.release(key);
    }
  }

  private acquire(key: string, concurrency: number) {
    const queue = this.queues.get(key) ?? { running: 0, waiting: [] };
    this.queues.set(key, queue);

    if (queue.running < concurrency) {
      queue.running += 1;
      return Promise.resolve();
    }

    return new Promise<void>((resolve) => {
      queue.waiting.push(() => {
        queue.running += 1;
        resolve();
      });
    });
  }

  private release(key: string) {
    const queue = this.queues.get(key);

    if (!queue) {
      return;
    }

    queue.running -= 1;
    const next = queue.waiting.shift();

    if (next) {
      next();
    } else if (queue.running === 0) {
      this.queues.delete(key);
    }
  }
}
