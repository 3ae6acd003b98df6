import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HostTracker, PING_PARALLELISM } from "../src/compute/hosts/tracker.js";
import type { AgentTarget } from "../src/drivers/agent-client.js";
import { AgentClient } from "../src/drivers/agent-client.js";
import type { TestServer } from "./harness.js";
import { type SimulatorCloud, startSimulatorCloud } from "./simulator-cloud.js";

/** An agent client that counts the pings in flight and the hosts pinged. */
class CountingAgentClient extends AgentClient {
  inFlight = 0;
  maxInFlight = 0;
  readonly pinged = new Set<string>();

  override async call<T>(target: AgentTarget, path: string, body: unknown, timeoutMs?: number) {
    if (path !== "/host/ping") {
      return super.call<T>(target, path, body, timeoutMs);
    }

    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);

    try {
      return await super.call<T>(target, path, body, timeoutMs);
    } finally {
      this.inFlight--;
      this.pinged.add(target.hostUuid);
    }
  }
}

describe("host tracker", () => {
  let t: TestServer;
  let cloud: SimulatorCloud;

  beforeAll(async () => {
    ({ t, cloud } = await startSimulatorCloud({
      hosts: PING_PARALLELISM * 2 + 10,
      cidr: "10.63.0.0/24",
      prefix: "tsimtrack",
    }));
  }, 180_000);

  afterAll(async () => {
    await t?.stop();
  });

  it("pings every host, a bounded number at once", async () => {
    const agents = new CountingAgentClient(t.server.core);
    const tracker = new HostTracker(t.server.core, agents, async () => {});

    await tracker.pingAll();

    expect(agents.pinged.size).toBe(cloud.hostUuids.length);
    expect(agents.maxInFlight).toBeLessThanOrEqual(PING_PARALLELISM);
    expect(agents.maxInFlight).toBeGreaterThan(1);
  });
});
