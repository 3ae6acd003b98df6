import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBusyboxTarball } from "../../agent/src/container/testbed.js";
import { buildCloud } from "./cloud.js";
import { startTestServer, type TestServer, until } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };
type Point = { time: number; value: number; labels: Record<string, string> };

const PREFIX = "tmn";
const CIDR = "172.30.201.0/24";
// Collections every 2 s keep the test short while leaving the agent room on a loaded machine.
const INTERVAL = 2;
// An idle busybox init costs its cgroup next to nothing, and the shell loop up to one CPU, the
// container's CFS quota, so 20% separates them on a loaded machine.
const CPU_THRESHOLD = 20;

// The init waits, then spins a shell loop for 30 s of container uptime, printing a line before
// and after.
const BUSY_LOOP = [
  "sleep 5",
  "echo TMN-LOAD-STARTED",
  "end=$(( $(cut -d. -f1 /proc/uptime) + 30 ))",
  'while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do :; done',
  "echo TMN-LOAD-DONE",
].join("\n");

function quiet(command: string, args: string[]) {
  try {
    execFileSync(command, args, { stdio: "ignore" });
  } catch {
    // Already gone.
  }
}

/** Removes the containers a failed test may have left: runc state, overlay mounts, namespaces. */
function removeContainersUnder(agentDir: string) {
  const dir = join(agentDir, "containers");

  for (const uuid of existsSync(dir) ? readdirSync(dir) : []) {
    quiet("runc", ["--root", join(agentDir, "runc"), "delete", "--force", `${PREFIX}${uuid}`]);
    quiet("umount", [join(dir, uuid, "rootfs")]);
    quiet("ip", ["netns", "delete", `${PREFIX}${uuid}`]);
  }
}

describe("container metrics", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;
  let work: string;
  let vm: Inventory;
  let since: number;

  const consoleLog = async () =>
    (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid: vm.uuid } })).console;
  const metric = async (metricName: string, aggregate = "max") =>
    (
      await admin.call<{ data: Point[] }>("getMetricData", {
        query: {
          namespace: "ZStack/VM",
          metricName,
          labels: `VMUuid=${vm.uuid}`,
          startTime: String(since),
          period: String(INTERVAL),
          aggregate,
        },
      })
    ).data;

  beforeAll(async () => {
    // The agent the test server spawns inherits the environment, so its names start with tmn.
    process.env.TSTACK_AGENT_CONTAINER_PREFIX = PREFIX;
    process.env.TSTACK_AGENT_NETNS_PREFIX = PREFIX;
    work = mkdtempSync(join(tmpdir(), "tmn-e2e-"));
    const tarPath = await buildBusyboxTarball(work, BUSY_LOOP);
    t = await startTestServer("sqlite");
    admin = t.admin;
    await admin.call("updateGlobalConfig", {
      path: { category: "monitoring", name: "interval" },
      params: { value: String(INTERVAL) },
    });
    cloud = await buildCloud(t, CIDR, tarPath, "Container");
    since = Math.floor(Date.now() / 1000) - 60;
    vm = (
      await admin.call<{ inventory: Inventory }>("createVmInstance", {
        params: {
          name: "tmn-ct",
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
      })
    ).inventory;
  }, 300_000);

  afterAll(async () => {
    if (cloud) {
      removeContainersUnder(cloud.agentDir);
      await cloud.cleanup();
    }

    await t?.stop();
    rmSync(work, { recursive: true, force: true });
    delete process.env.TSTACK_AGENT_CONTAINER_PREFIX;
    delete process.env.TSTACK_AGENT_NETNS_PREFIX;
  });

  it("runs as a container", () => {
    expect(vm.hypervisorType).toBe("Container");
    expect(vm.state).toBe("Running");
  });

  it("shows a busy loop in CPUUsedUtilization", async () => {
    await until(
      consoleLog,
      (text) => text.includes("TMN-LOAD-STARTED"),
      "container load start",
      60_000,
    );
    const started = Math.floor(Date.now() / 1000);

    // A bounded wait, not a timing assertion: the sample covering the loop must arrive by then.
    const points = await until(
      () => metric("CPUUsedUtilization"),
      (data) =>
        data.some((point) => point.time >= started - INTERVAL && point.value > CPU_THRESHOLD),
      `container CPU utilisation above ${CPU_THRESHOLD}%`,
      10 * INTERVAL * 1000,
    );

    expect(points.every((point) => point.labels.VMUuid === vm.uuid)).toBe(true);
    expect(points.every((point) => point.value <= 100)).toBe(true);
  });

  it("reports CPU time and memory", async () => {
    const cpuTime = await metric("CPUTimeSeconds");
    const memory = await metric("MemoryUsedBytes");

    expect(cpuTime.at(-1)?.value).toBeGreaterThan(0);
    expect(memory.at(-1)?.value).toBeGreaterThan(0);
    // The memory cgroup limit is the offering's 128 MiB.
    expect(memory.at(-1)?.value).toBeLessThanOrEqual(128 * 1024 * 1024);
  });

  it("reports the veth host end as the NIC", async () => {
    const nic = (vm.vmNics as { internalName?: string }[] | undefined)?.[0];
    const points = await until(
      () => metric("NetworkInBytes"),
      (data) => data.length > 0,
      "container NIC samples",
      10 * INTERVAL * 1000,
    );

    expect(nic?.internalName).toBeDefined();
    expect(points[0]!.labels.InterfaceName).toBe(nic?.internalName);
  });

  it("leaves the veth out of host interfaces", async () => {
    const nic = (vm.vmNics as { internalName?: string }[])[0]!;
    const data = (
      await admin.call<{ data: Point[] }>("getMetricData", {
        query: {
          namespace: "ZStack/Host",
          metricName: "NetworkInBytes",
          labels: `InterfaceName=${nic.internalName}`,
          startTime: String(since),
          period: String(INTERVAL),
        },
      })
    ).data;

    expect(data).toEqual([]);
  });
});
