import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runningAgentPid } from "../src/compute/hosts/local.js";
import { startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

async function freePort() {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

async function until<T>(read: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let value = await read();

  while (!accept(value)) {
    if (Date.now() > deadline) {
      throw new Error(`condition not met in time; last value: ${JSON.stringify(value)}`);
    }

    await new Promise((resolve) => setTimeout(resolve, 200));
    value = await read();
  }

  return value;
}

describe("KVM host on the management node's machine", () => {
  let t: TestServer;
  let admin: TstackClient;
  let agentDir: string;
  let cluster: Inventory;

  beforeAll(async () => {
    t = await startTestServer("sqlite");
    admin = t.admin;
    agentDir = mkdtempSync(join(tmpdir(), "tstack-agent-"));
    await admin.call("updateGlobalConfig", {
      path: { category: "host", name: "agent.dataDir" },
      params: { value: agentDir },
    });
    await admin.call("updateGlobalConfig", {
      path: { category: "host", name: "agent.port" },
      params: { value: String(await freePort()) },
    });
    const zone = (
      await admin.call<{ inventory: Inventory }>("createZone", { params: { name: "z" } })
    ).inventory;
    cluster = (
      await admin.call<{ inventory: Inventory }>("createCluster", {
        params: { zoneUuid: zone.uuid, name: "kvm", hypervisorType: "KVM" },
      })
    ).inventory;
  });

  afterAll(async () => {
    const pid = runningAgentPid(agentDir);

    if (pid) {
      process.kill(pid, "SIGKILL");
    }

    await t?.stop();
    rmSync(agentDir, { recursive: true, force: true });
  });

  it("adds the host, deploys the agent and records facts and capacity", async () => {
    const host = (
      await admin.call<{ inventory: Inventory }>("addKVMHost", {
        params: {
          name: "local",
          managementIp: "127.0.0.1",
          username: "root",
          clusterUuid: cluster.uuid,
        },
      })
    ).inventory;
    expect(host.status).toBe("Connected");
    expect(host.state).toBe("Enabled");
    expect(host.accelerator).toBe("tcg");
    expect(host.cpuNum).toBeGreaterThan(0);
    expect(Number(host.totalMemoryCapacity)).toBeGreaterThan(0);
    expect(host.availableMemoryCapacity).toBe(host.totalMemoryCapacity);
    expect(runningAgentPid(agentDir)).toBeGreaterThan(0);

    const secret = readFileSync(join(agentDir, "host-secret"), "utf8").trim();
    const row = await t.server.core.kysely
      .selectFrom("hosts")
      .select("agentSecret")
      .where("uuid", "=", host.uuid)
      .executeTakeFirstOrThrow();
    expect(row.agentSecret).not.toContain(secret);

    const capacity = await admin.call<{ totalMemory: number }>("getCpuMemoryCapacity", {
      query: { hostUuids: host.uuid },
    });
    expect(capacity.totalMemory).toBe(host.totalMemoryCapacity);
  });

  it("rejects a second host on the same address and a non-KVM cluster", async () => {
    await expect(
      admin.call("addKVMHost", {
        params: {
          name: "again",
          managementIp: "127.0.0.1",
          username: "root",
          clusterUuid: cluster.uuid,
        },
      }),
    ).rejects.toThrow(/already uses 127.0.0.1/);
    await expect(
      admin.call("addKVMHost", {
        params: {
          name: "bad ip",
          managementIp: "10.0.0.1; rm -rf /",
          username: "root",
          clusterUuid: cluster.uuid,
        },
      }),
    ).rejects.toThrow(/params.managementIp/);
  });

  it("refuses unsigned commands at the agent", async () => {
    const port = t.server.core.config.number("host", "agent.port");
    const response = await fetch(`http://127.0.0.1:${port}/host/ping`, {
      method: "POST",
      body: "{}",
      headers: { "content-type": "application/json" },
    });
    expect(response.status).toBe(401);
  });

  it("marks a host Disconnected when its agent dies and reconnects it", async () => {
    const host = (await admin.query<Inventory>("queryHost")).inventories[0]!;
    await admin.call("updateGlobalConfig", {
      path: { category: "host", name: "ping.maxFailure" },
      params: { value: "1" },
    });
    const oldPid = runningAgentPid(agentDir)!;
    process.kill(oldPid, "SIGKILL");

    await t.server.core.config.apply("host", "connection.autoReconnectOnError", "false");
    const tracker = await import("../src/compute/hosts/tracker.js");
    const module = await import("../src/drivers/agent-client.js");
    const pinger = new tracker.HostTracker(
      t.server.core,
      new module.AgentClient(t.server.core),
      async () => {},
    );
    await pinger.pingAll();
    const down = (await admin.query<Inventory>("queryHost", [`uuid=${host.uuid}`])).inventories[0]!;
    expect(down.status).toBe("Disconnected");
    expect(String(down.lastError)).toMatch(/failed to reach the agent/);

    const back = (
      await admin.call<{ inventory: Inventory }>("reconnectHost", { path: { uuid: host.uuid } })
    ).inventory;
    expect(back.status).toBe("Connected");
    expect(runningAgentPid(agentDir)).not.toBe(oldPid);

    const events = await t.server.core.kysely
      .selectFrom("events")
      .select("content")
      .where("path", "=", "/host/status/change")
      .where("resourceUuid", "=", host.uuid)
      .execute();
    expect(events.map((event) => JSON.parse(event.content).newStatus)).toEqual(
      expect.arrayContaining(["Connected", "Disconnected"]),
    );
  });

  it("deletes the host and stops its agent", async () => {
    const host = (await admin.query<Inventory>("queryHost")).inventories[0]!;
    const pid = runningAgentPid(agentDir)!;
    await admin.call("deleteHost", { path: { uuid: host.uuid } });
    await until(
      async () => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      },
      (alive) => !alive,
    );
    expect((await admin.query("queryHost")).inventories).toEqual([]);
  });
});
