import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AgentConfigurator } from "../src/monitoring/agent-config.js";
import type { TestServer } from "./harness.js";
import { type SimulatorCloud, startSimulatorCloud } from "./simulator-cloud.js";

describe("monitoring agent config", () => {
  let t: TestServer;
  let cloud: SimulatorCloud;

  beforeAll(async () => {
    ({ t, cloud } = await startSimulatorCloud({
      hosts: 3,
      cidr: "10.63.1.0/24",
      prefix: "tsimconfig",
    }));
  }, 120_000);

  afterAll(async () => {
    await t?.stop();
  });

  it("reconciles unchanged configs without secrets", async () => {
    const core = t.server.core;
    const configurator = new AgentConfigurator(core);
    const calls = vi.spyOn(core.agents, "call");
    const configsSent = () => calls.mock.calls.filter(([, path]) => path === "/monitoring/config");

    await configurator.reconcile();
    const first = configsSent().map(([target, , body]) => ({ target, body }));
    const opens = vi.spyOn(core.secrets, "open");
    await configurator.reconcile();
    const opensWhenUnchanged = opens.mock.calls.length;
    const sentWhenUnchanged = configsSent().length - first.length;
    await core.config.apply("monitoring", "interval", "20");
    calls.mockClear();
    await configurator.reconcile();
    // The module's own configurator also reconciles on the change, so a host may get two.
    const afterChange = configsSent().map(([target, , body]) => ({
      hostUuid: target.hostUuid,
      intervalSeconds: (body as { intervalSeconds: number }).intervalSeconds,
    }));
    calls.mockRestore();
    opens.mockRestore();

    expect(first.map(({ target }) => target.hostUuid).sort()).toEqual([...cloud.hostUuids].sort());

    for (const { target, body } of first) {
      expect((body as { pushUrl: string }).pushUrl).toMatch(new RegExp(`/${target.hostUuid}$`));
    }

    expect(sentWhenUnchanged).toBe(0);
    expect(opensWhenUnchanged).toBe(0);
    expect(new Set(afterChange.map((sent) => sent.hostUuid))).toEqual(new Set(cloud.hostUuids));
    expect(afterChange.every((sent) => sent.intervalSeconds === 20)).toBe(true);
  });
});
