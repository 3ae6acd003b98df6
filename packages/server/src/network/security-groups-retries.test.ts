import pino from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { HostPushRetries, type RetryOutcome } from "./security-groups-retries.js";

const HOST = "a".repeat(32);
const OTHER = "b".repeat(32);
const OPTIONS = { initialDelayMs: 100, maxDelayMs: 1000 };

/** A push whose outcomes are given in order, recording the hosts it was called for. */
function scriptedPush(outcomes: RetryOutcome[]) {
  const calls: string[] = [];
  const push = async (hostUuid: string) => {
    calls.push(hostUuid);
    return outcomes.shift() ?? "pushed";
  };
  return { calls, push };
}

/** A push that stays running until `finish` is called with its outcome. */
function blockingPush() {
  const calls: string[] = [];
  let finish: (outcome: RetryOutcome) => void = () => {};
  const push = (hostUuid: string) => {
    calls.push(hostUuid);
    return new Promise<RetryOutcome>((resolve) => {
      finish = resolve;
    });
  };
  return { calls, push, finish: (outcome: RetryOutcome) => finish(outcome) };
}

const silent = pino({ level: "silent" });

describe("HostPushRetries", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it("doubles the delay up to the maximum", () => {
    const retries = new HostPushRetries(async () => "pushed", silent, OPTIONS);

    expect(retries.delayAfter(1)).toBe(100);
    expect(retries.delayAfter(2)).toBe(200);
    expect(retries.delayAfter(4)).toBe(800);
    expect(retries.delayAfter(5)).toBe(1000);
    expect(retries.delayAfter(500)).toBe(1000);
  });

  it("keeps one pending retry per host", async () => {
    const { calls, push } = scriptedPush([]);
    const retries = new HostPushRetries(push, silent, OPTIONS);

    retries.failed(HOST);
    retries.failed(HOST);
    retries.failed(HOST);
    retries.failed(OTHER);
    await vi.advanceTimersByTimeAsync(100);

    expect(calls.sort()).toEqual([HOST, OTHER]);
    expect(retries.pendingHosts()).toEqual([]);
  });

  it("retries with growing delays until a push succeeds", async () => {
    const { calls, push } = scriptedPush(["failed", "failed", "pushed"]);
    const retries = new HostPushRetries(push, silent, OPTIONS);

    retries.failed(HOST);
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toHaveLength(1);

    await vi.advanceTimersByTimeAsync(199);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);

    await vi.advanceTimersByTimeAsync(400);
    expect(calls).toHaveLength(3);
    expect(retries.pendingHosts()).toEqual([]);

    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls).toHaveLength(3);
  });

  it("drops a host whose retry was skipped", async () => {
    const { calls, push } = scriptedPush(["skipped"]);
    const retries = new HostPushRetries(push, silent, OPTIONS);

    retries.failed(HOST);
    await vi.advanceTimersByTimeAsync(100);
    await vi.advanceTimersByTimeAsync(10_000);

    expect(calls).toEqual([HOST]);
    expect(retries.pendingHosts()).toEqual([]);
  });

  it("treats a raising push as failed", async () => {
    let raised = 0;
    const retries = new HostPushRetries(
      async () => {
        raised += 1;

        if (raised === 1) {
          throw new Error("database closed");
        }

        return "pushed";
      },
      silent,
      OPTIONS,
    );

    retries.failed(HOST);
    await vi.advanceTimersByTimeAsync(100);
    expect(retries.pendingHosts()).toEqual([HOST]);

    await vi.advanceTimersByTimeAsync(200);
    expect(raised).toBe(2);
    expect(retries.pendingHosts()).toEqual([]);
  });

  it("retries again after a failure during a successful retry", async () => {
    const blocking = blockingPush();
    const retries = new HostPushRetries(blocking.push, silent, OPTIONS);

    retries.failed(HOST);
    await vi.advanceTimersByTimeAsync(100);
    expect(blocking.calls).toHaveLength(1);

    retries.failed(HOST);
    blocking.finish("pushed");
    await vi.advanceTimersByTimeAsync(0);
    expect(retries.pendingHosts()).toEqual([HOST]);

    await vi.advanceTimersByTimeAsync(100);
    expect(blocking.calls).toHaveLength(2);
    blocking.finish("pushed");
    await vi.advanceTimersByTimeAsync(0);
    expect(retries.pendingHosts()).toEqual([]);
  });

  it("never pushes to a cancelled host", async () => {
    const { calls, push } = scriptedPush(["failed"]);
    const retries = new HostPushRetries(push, silent, OPTIONS);

    retries.failed(HOST);
    retries.cancel(HOST);
    await vi.advanceTimersByTimeAsync(10_000);

    expect(calls).toEqual([]);
    expect(retries.pendingHosts()).toEqual([]);
  });

  it("arms nothing after a cancel during a retry", async () => {
    const blocking = blockingPush();
    const retries = new HostPushRetries(blocking.push, silent, OPTIONS);

    retries.failed(HOST);
    await vi.advanceTimersByTimeAsync(100);
    retries.cancel(HOST);
    blocking.finish("failed");
    await vi.advanceTimersByTimeAsync(10_000);

    expect(blocking.calls).toHaveLength(1);
    expect(retries.pendingHosts()).toEqual([]);
  });

  it("waits for a running retry at stop, then arms nothing", async () => {
    const blocking = blockingPush();
    const retries = new HostPushRetries(blocking.push, silent, OPTIONS);

    retries.failed(HOST);
    await vi.advanceTimersByTimeAsync(100);
    let stopped = false;
    const stopping = retries.stop().then(() => {
      stopped = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(stopped).toBe(false);

    blocking.finish("failed");
    await stopping;
    retries.failed(HOST);
    await vi.advanceTimersByTimeAsync(10_000);

    expect(stopped).toBe(true);
    expect(blocking.calls).toHaveLength(1);
    expect(retries.pendingHosts()).toEqual([]);
  });
});
