import { describe, expect, it } from "vitest";
import { runChaos } from "./chaos/run.js";

describe("chaos", () => {
  it("keeps every invariant through faults and SIGKILLs", async () => {
    const result = await runChaos({
      hosts: 10,
      cidr: "10.62.0.0/22",
      workers: 8,
      durationMs: 30_000,
      killEveryMs: 9_000,
      settleMs: 60_000,
    });
    const { violations, ...summary } = result;

    expect(result.kills).toBeGreaterThan(0);
    expect(violations, JSON.stringify(summary)).toEqual([]);
  }, 180_000);
});
