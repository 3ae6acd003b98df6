import pino from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Rounds } from "./rounds.js";

describe("Rounds", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("restarts a wait with a new interval", async () => {
    vi.useFakeTimers();
    let seconds = 60;
    const started: number[] = [];
    const rounds = new Rounds(
      () => seconds * 1000,
      async () => {
        started.push(Date.now());
      },
      pino({ level: "silent" }),
      "test round",
    );
    const start = Date.now();
    rounds.start();

    await vi.advanceTimersByTimeAsync(10_000);
    seconds = 1;
    rounds.restartWait();
    await vi.advanceTimersByTimeAsync(2_500);

    expect(started.map((at) => at - start)).toEqual([11_000, 12_000]);
    await rounds.stop();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(started).toHaveLength(2);
  });

  it("runs one round at a time after failures", async () => {
    vi.useFakeTimers();
    let active = 0;
    let maxActive = 0;
    let calls = 0;
    const rounds = new Rounds(
      () => 1000,
      async () => {
        calls++;
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        active--;

        if (calls === 1) {
          throw new Error("round failed");
        }
      },
      pino({ level: "silent" }),
      "test round",
    );
    rounds.start();
    rounds.restartWait();

    await vi.advanceTimersByTimeAsync(1_500);
    rounds.restartWait();
    await vi.advanceTimersByTimeAsync(8_000);

    expect(maxActive).toBe(1);
    expect(calls).toBe(3);

    // A stop waits for the round that is running, and no round follows it.
    const stopped = rounds.stop();
    await vi.advanceTimersByTimeAsync(5_000);
    await stopped;
    expect(calls).toBe(3);
  });

  it("aborts a running round at stop", async () => {
    vi.useFakeTimers();
    let hostsDone = 0;
    const rounds = new Rounds(
      () => 1000,
      async (signal) => {
        while (hostsDone < 1000 && !signal.aborted) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          hostsDone++;
        }
      },
      pino({ level: "silent" }),
      "test round",
    );
    rounds.start();
    await vi.advanceTimersByTimeAsync(1_550);

    const stopped = rounds.stop();
    await vi.advanceTimersByTimeAsync(200);
    await stopped;

    expect(hostsDone).toBe(6);
  });
});
