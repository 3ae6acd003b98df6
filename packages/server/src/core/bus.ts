import { newUuid } from "./ids.js";

/** A message on the bus; consumers use `id` to ignore a message they already handled. */
export interface Message<T = unknown> {
  id: string;
  topic: string;
  body: T;
}

export type Handler<T = unknown> = (message: Message<T>) => Promise<unknown> | unknown;

/**
 * How services talk to each other: request/reply with a timeout, and publish/subscribe.
 * The in-process implementation serves one management node; a NATS one can serve a cluster.
 */
export interface Bus {
  /** Sends to the one handler of `topic` and resolves with its reply, or rejects on timeout. */
  send<R = unknown>(topic: string, body: unknown, timeoutMs: number): Promise<R>;
  /** Registers the handler that replies to `send` on `topic`. */
  serve(topic: string, handler: Handler): void;
  /** Delivers to every subscriber of `topic`; a message id seen before is skipped. */
  publish(topic: string, body: unknown, id?: string): Promise<void>;
  subscribe(topic: string, handler: Handler): () => void;
  close(): Promise<void>;
}

const SEEN_IDS_KEPT = 10_000;

/** The bus of a single management node: handlers run in this process. */
export class InProcessBus implements Bus {
  private readonly servers = new Map<string, Handler>();
  private readonly subscribers = new Map<string, Set<Handler>>();
  private readonly seen = new Set<string>();
  private closed = false;

  async send<R>(topic: string, body: unknown, timeoutMs: number): Promise<R> {
    const handler = this.servers.get(topic);

    if (!handler || this.closed) {
      throw new Error(`no service handles bus topic ${topic}`);
    }

    const message: Message = { id: newUuid(), topic, body };
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`bus message on ${topic} timed out after ${timeoutMs} ms`)),
        timeoutMs,
      );
    });

    try {
      return (await Promise.race([Promise.resolve(handler(message)), timeout])) as R;
    } finally {
      clearTimeout(timer);
    }
  }

  serve(topic: string, handler: Handler) {
    if (this.servers.has(topic)) {
      throw new Error(`bus topic ${topic} already has a handler`);
    }

    this.servers.set(topic, handler);
  }

  async publish(topic: string, body: unknown, id = newUuid()) {
    if (this.closed || this.seen.has(id)) {
      return;
    }

    this.remember(id);
    const handlers = [...(this.subscribers.get(topic) ?? []), ...(this.subscribers.get("*") ?? [])];
    const message: Message = { id, topic, body };
    await Promise.allSettled(handlers.map(async (handler) => handler(message)));
  }

  subscribe(topic: string, handler: Handler) {
    const handlers = this.subscribers.get(topic) ?? new Set();
    handlers.add(handler);
    this.subscribers.set(topic, handlers);
    return () => handlers.delete(handler);
  }

  async close() {
    this.closed = true;
  }

  private remember(id: string) {
    this.seen.add(id);

    if (this.seen.size > SEEN_IDS_KEPT) {
      const oldest = this.seen.values().next().value;

      if (oldest !== undefined) {
        this.seen.delete(oldest);
      }
    }
  }
}
