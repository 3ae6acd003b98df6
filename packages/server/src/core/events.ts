import { createHmac } from "node:crypto";
import type { Kysely, Transaction } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.js";
import type { Bus } from "./bus.js";
import { now } from "./ids.js";

/** A canonical event, such as `/zone/state/change`, as stored and streamed. */
export interface CanonicalEvent {
  id: number;
  path: string;
  resourceUuid: string | null;
  accountUuid: string | null;
  content: unknown;
  createDate: string;
}

export type Executor = Kysely<Database> | Transaction<Database>;

/** Transactions that queued an event or a delivery, so their commit needs a relay pass. */
const queuedIn = new WeakSet<object>();
/** Whether an event or delivery was written outside a transaction since the last commit. */
let queuedOutside = false;

function markQueued(tx: Executor) {
  if (tx.isTransaction) {
    queuedIn.add(tx);
  } else {
    queuedOutside = true;
  }
}

/**
 * Returns whether a relay pass is due after `tx` commits: it queued something, or a write
 * outside any transaction did since the last call. Clears the outside flag.
 */
export function relayDueAfter(tx: Transaction<Database>) {
  const due = queuedIn.has(tx) || queuedOutside;
  queuedOutside = false;
  return due;
}

/**
 * Writes an event in the caller's transaction, together with one webhook delivery per matching
 * subscription, so the state change and its announcement commit or roll back together.
 */
export async function emitEvent(
  tx: Executor,
  path: string,
  event: { resourceUuid?: string; accountUuid?: string; content: unknown },
) {
  const createDate = now();
  const content = JSON.stringify(event.content);
  const row = await tx
    .insertInto("events")
    .values({
      path,
      resourceUuid: event.resourceUuid ?? null,
      accountUuid: event.accountUuid ?? null,
      content,
      createDate,
    })
    .returning("id")
    .executeTakeFirstOrThrow();
  markQueued(tx);

  const hooks = await tx
    .selectFrom("webHooks")
    .select(["url", "opaque", "secret", "accountUuid"])
    .where("type", "=", "CanonicalEvent")
    .execute();

  for (const hook of hooks) {
    const visible =
      hook.accountUuid === event.accountUuid || (await isAdminAccount(tx, hook.accountUuid));

    if (!visible || !matchesGlob(hook.opaque ?? "**", path)) {
      continue;
    }

    const body = JSON.stringify({
      id: row.id,
      path,
      resourceUuid: event.resourceUuid ?? null,
      content: event.content,
      createDate,
    });
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "x-tstack-event-id": String(row.id),
    };

    if (hook.secret) {
      headers["x-tstack-signature"] =
        `sha256=${createHmac("sha256", hook.secret).update(body).digest("hex")}`;
    }

    await queueDelivery(tx, hook.url, headers, body);
  }
}

async function isAdminAccount(tx: Executor, accountUuid: string) {
  const account = await tx
    .selectFrom("accounts")
    .select("type")
    .where("uuid", "=", accountUuid)
    .executeTakeFirst();
  return account?.type === "SystemAdmin";
}

/** Queues an HTTP POST that the relay sends after the transaction commits, with retries. */
export async function queueDelivery(
  tx: Executor,
  url: string,
  headers: Record<string, string>,
  body: string,
) {
  const createDate = now();
  await tx
    .insertInto("deliveries")
    .values({
      url,
      headers: JSON.stringify(headers),
      body,
      attempts: 0,
      nextAttemptDate: createDate,
      state: "Pending",
      lastError: null,
      createDate,
    })
    .execute();
  markQueued(tx);
}

/** Matches an event path against a glob where `*` is one segment and `**` any number. */
export function matchesGlob(glob: string, path: string): boolean {
  const pattern = glob
    .split("/")
    .map((part) =>
      part === "**" ? ".*" : part.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replaceAll("*", "[^/]*"),
    )
    .join("/");
  return new RegExp(`^${pattern}$`).test(path);
}

const MAX_DELIVERY_ATTEMPTS = 15;
/**
 * Delay between a kick and its pass. Without it a VM create ran about four passes of two queries
 * each, one per committed event, on the control-plane benchmark.
 */
const KICK_DELAY_MS = 10;
const DELIVERY_TIMEOUT_MS = 10_000;

/**
 * Delivers what transactions queued: publishes new events on the bus and to stream listeners,
 * and POSTs pending webhook deliveries. Runs shortly after every commit that queued something
 * and on a timer, so a crash between commit and delivery only delays a delivery.
 */
export class Relay {
  private lastEventId = 0;
  private running: Promise<void> | undefined;
  private scheduled: NodeJS.Timeout | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(event: CanonicalEvent) => void>();
  private readonly inFlight = new Set<number>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly bus: Bus,
    private readonly log: Logger,
  ) {}

  async start() {
    const last = await this.db
      .selectFrom("events")
      .select((eb) => eb.fn.max("id").as("id"))
      .executeTakeFirst();
    this.lastEventId = Number(last?.id ?? 0);
    this.timer = setInterval(() => this.kick(), 1000);
    this.timer.unref();
  }

  stop() {
    clearInterval(this.timer);
  }

  onEvent(listener: (event: CanonicalEvent) => void) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Asks for a delivery pass. The pass starts after a short delay, so the commits of that delay
   * share it. Passes never overlap, and a kick during one schedules another.
   */
  kick() {
    if (this.running) {
      this.again = true;
      return;
    }

    this.scheduled ??= setTimeout(() => this.startPass(), KICK_DELAY_MS);
  }

  /** Resolves when no relay pass is scheduled or running; a scheduled pass starts at once. */
  async settle() {
    while (this.running || this.scheduled) {
      if (!this.running) {
        this.startPass();
      }

      await this.running;
    }
  }

  private startPass() {
    clearTimeout(this.scheduled);
    this.scheduled = undefined;
    this.running = this.pass()
      .catch((error) => this.log.error({ err: error }, "event relay pass failed"))
      .finally(() => {
        this.running = undefined;

        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async pass() {
    await this.publishEvents();
    await this.sendDeliveries();
  }

  private async publishEvents() {
    const rows = await this.db
      .selectFrom("events")
      .selectAll()
      .where("id", ">", this.lastEventId)
      .orderBy("id")
      .limit(1000)
      .execute();

    for (const row of rows) {
      const event: CanonicalEvent = {
        ...row,
        id: Number(row.id),
        content: JSON.parse(row.content),
      };
      this.lastEventId = event.id;

      for (const listener of this.listeners) {
        listener(event);
      }

      await this.bus.publish(`event${event.path}`, event, `event-${event.id}`);
    }
  }

  private async sendDeliveries() {
    const due = await this.db
      .selectFrom("deliveries")
      .selectAll()
      .where("state", "=", "Pending")
      .where("nextAttemptDate", "<=", now())
      .orderBy("id")
      .limit(100)
      .execute();

    for (const delivery of due) {
      const id = Number(delivery.id);

      if (!this.inFlight.has(id)) {
        this.inFlight.add(id);
        void this.deliver({ ...delivery, id }).finally(() => this.inFlight.delete(id));
      }
    }
  }

  private async deliver(delivery: {
    id: number;
    url: string;
    headers: string;
    body: string;
    attempts: number;
  }) {
    const attempts = delivery.attempts + 1;
    let error: string | undefined;

    try {
      const response = await fetch(delivery.url, {
        method: "POST",
        headers: JSON.parse(delivery.headers),
        body: delivery.body,
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
      });
      await response.arrayBuffer();
      error = response.ok ? undefined : `HTTP ${response.status}`;
    } catch (failure) {
      error = failure instanceof Error ? failure.message : String(failure);
    }

    if (error === undefined) {
      await this.db
        .updateTable("deliveries")
        .set({ state: "Delivered", attempts, lastError: null })
        .where("id", "=", delivery.id)
        .execute();
      return;
    }

    const state = attempts >= MAX_DELIVERY_ATTEMPTS ? "Failed" : "Pending";
    const backoffMs = Math.min(2000 * 2 ** (attempts - 1), 300_000);
    const nextAttemptDate = new Date(Date.now() + backoffMs).toISOString();
    this.log.warn({ url: delivery.url, attempts, err: error, state }, "webhook delivery failed");
    await this.db
      .updateTable("deliveries")
      .set({ state, attempts, lastError: error, nextAttemptDate })
      .where("id", "=", delivery.id)
      .execute();
  }
}
