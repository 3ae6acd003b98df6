import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { simulatorLink } from "../src/simulator/link.js";
import { startTestServer, type TestServer } from "./harness.js";
import { buildSimulatorCloud } from "./simulator-cloud.js";

type Vm = { uuid: string; state: string; hostUuid: string | null } & Record<string, unknown>;

describe("simulator hosts", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildSimulatorCloud>>;

  beforeAll(async () => {
    t = await startTestServer("sqlite");
    admin = t.admin;
    cloud = await buildSimulatorCloud(admin, { hosts: 3, cidr: "10.61.0.0/24", prefix: "tsim" });
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("runs a VM lifecycle", async () => {
    const vm = (
      await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name: "vm",
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
      })
    ).inventory;
    const { control } = await simulatorLink(t.server.core);
    const [host] = await control.state(vm.hostUuid!);

    expect(vm.state).toBe("Running");
    expect(host?.vms?.map((entry) => entry.vmUuid)).toEqual([vm.uuid]);
  });
});
