import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allocateHost, release } from "../src/compute/vms/allocator.js";
import { newUuid, now } from "../src/core/ids.js";
import { dialects, startTestServer, type TestServer } from "./harness.js";

const GiB = 1024 ** 3;

describe.each(dialects)("host allocator on %s", (dialect) => {
  let t: TestServer;
  const hosts: string[] = [];
  let clusterUuid: string;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    const zone = (
      await t.admin.call<{ inventory: { uuid: string } }>("createZone", { params: { name: "z" } })
    ).inventory;
    clusterUuid = (
      await t.admin.call<{ inventory: { uuid: string } }>("createCluster", {
        params: { zoneUuid: zone.uuid, name: "c", hypervisorType: "KVM" },
      })
    ).inventory.uuid;

    // Three hosts with 4 GiB each, written directly: the allocator is what is under test.
    for (const [index, status] of [
      "Connected",
      "Connected",
      "Connected",
      "Disconnected",
    ].entries()) {
      const uuid = newUuid();
      const stamp = now();
      await t.server.core.kysely
        .insertInto("hosts")
        .values({
          uuid,
          name: `h${index}`,
          description: null,
          accountUuid: "36c27e8ff05c4780bf6d2fa65700f22e",
          createDate: stamp,
          lastOpDate: stamp,
          version: 0,
          zoneUuid: zone.uuid,
          clusterUuid,
          managementIp: `192.0.2.${index + 1}`,
          hypervisorType: "KVM",
          state: "Enabled",
          status,
          architecture: "x86_64",
          username: null,
          sshPort: 22,
          credential: null,
          agentSecret: "x",
          agentPort: 7070,
          facts: null,
          accelerator: "tcg",
          lastError: null,
        })
        .execute();
      await t.server.core.kysely
        .insertInto("hostCapacities")
        .values({
          uuid,
          totalCpu: 40,
          availableCpu: 40,
          cpuNum: 4,
          totalMemory: 4 * GiB,
          availableMemory: 4 * GiB,
          totalPhysicalMemory: 4 * GiB,
          availablePhysicalMemory: 4 * GiB,
        })
        .execute();
      hosts.push(uuid);
    }
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("never over-books memory under 50 concurrent allocations", async () => {
    const attempts = await Promise.allSettled(
      Array.from({ length: 50 }, () =>
        t.server.core.transact((tx) =>
          allocateHost(tx, { cpuNum: 1, memorySize: 512 * 1024 ** 2, hypervisorType: "KVM" }),
        ),
      ),
    );
    const won = attempts.filter((attempt) => attempt.status === "fulfilled");
    const lost = attempts.filter(
      (attempt) => attempt.status === "rejected",
    ) as PromiseRejectedResult[];

    // 3 connected hosts x 4 GiB / 512 MiB = 24 VMs fit, and no more.
    expect(won).toHaveLength(24);
    expect(lost).toHaveLength(26);
    expect(String(lost[0]!.reason.message)).toMatch(/status Disconnected/);
    expect(String(lost[0]!.reason.message)).toMatch(
      /0 MiB memory available, 512 MiB needed|taken by a concurrent allocation/,
    );

    const capacities = await t.server.core.kysely
      .selectFrom("hostCapacities")
      .selectAll()
      .where("uuid", "in", hosts.slice(0, 3))
      .execute();
    expect(capacities.every((capacity) => capacity.availableMemory === 0)).toBe(true);
    expect(capacities.every((capacity) => capacity.availableCpu === 32)).toBe(true);
  });

  it("returns capacity without exceeding the total", async () => {
    await t.server.core.transact(async (tx) => {
      await release(tx, hosts[0]!, 1, 512 * 1024 ** 2);
      await release(tx, hosts[0]!, 100, 100 * GiB);
    });
    const capacity = await t.server.core.kysely
      .selectFrom("hostCapacities")
      .selectAll()
      .where("uuid", "=", hosts[0]!)
      .executeTakeFirstOrThrow();
    expect(capacity.availableMemory).toBe(4 * GiB);
    expect(capacity.availableCpu).toBe(40);
  });

  it("picks the host with most free memory", async () => {
    // host h0 has all 4 GiB back from the test above, and h1 gets 1 GiB back here.
    await t.server.core.transact((tx) => release(tx, hosts[1]!, 1, GiB));

    const chosen = await t.server.core.transact((tx) =>
      allocateHost(tx, { cpuNum: 1, memorySize: 512 * 1024 ** 2, hypervisorType: "KVM" }),
    );
    await t.server.core.transact((tx) => release(tx, chosen.uuid, 1, 512 * 1024 ** 2));

    expect(chosen.uuid).toBe(hosts[0]);
  });

  it("honours a designated host and explains the refusal", async () => {
    const error = await t.server.core
      .transact((tx) =>
        allocateHost(tx, { cpuNum: 1, memorySize: GiB, hypervisorType: "KVM", hostUuid: hosts[3] }),
      )
      .catch((failure: Error) => failure);
    expect(String((error as Error).message)).toMatch(
      new RegExp(`host h3 \\(${hosts[3]}\\): status Disconnected`),
    );
    expect(String((error as Error).message)).toMatch(/host h0 .*not the requested host/);
  });
});
