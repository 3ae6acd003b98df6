import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runningAgentPid } from "../src/compute/hosts/local.js";
import { newUuid } from "../src/core/ids.js";
import { buildCloud } from "./cloud.js";
import { ADMIN_PASSWORD, freePort, type TestServer } from "./harness.js";
import { exited, launchServer, type ServerProcess } from "./server-process.js";

type Inventory = { uuid: string } & Record<string, unknown>;

/** Milliseconds before each workflow step, so that the test can kill the node between steps. */
const STEP_DELAY_MS = 700;

/** What must be the same after any crash as before the VM: no capacity, IP or tap kept. */
interface Leftovers {
  availableMemory: number;
  /** Addresses held for VMs; the L3's DHCP server keeps its own once the first VM started. */
  vmIps: string[];
}

function qemuPids(vmUuid: string) {
  const pids: number[] = [];

  for (const entry of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");

      if (cmdline.includes("qemu-system") && cmdline.includes(vmUuid)) {
        pids.push(Number(entry));
      }
    } catch {
      // The process ended while we looked.
    }
  }

  return pids;
}

function linkExists(name: string) {
  try {
    execFileSync("ip", ["link", "show", name], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;

  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    }

    await new Promise((done) => setTimeout(done, 20));
  }
}

describe("VM operations and a management node crash", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "tstack-vm-crash-"));
  const environment = (delayMs: number) => ({
    ...process.env,
    TSTACK_ADMIN_PASSWORD: ADMIN_PASSWORD,
    TSTACK_LOG_LEVEL: "warn",
    TSTACK_TEST_WORKFLOW_STEP_DELAY_MS: String(delayMs),
  });
  let port: number;
  let server: ServerProcess;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;
  let baseline: Leftovers;

  async function start(delayMs: number) {
    server = await launchServer(dataDir, undefined, environment(delayMs), port);
  }

  async function crash() {
    server.child.kill("SIGKILL");
    await exited(server.child);
  }

  async function stop() {
    server.child.kill("SIGTERM");
    await exited(server.child);
  }

  async function leftovers(): Promise<Leftovers> {
    const host = (await admin.query<Inventory>("queryHost", [`uuid=${cloud.hostUuid}`]))
      .inventories[0]!;
    const used = await admin.call<{ ipStatistics: { ip: string; resourceTypes: string[] }[] }>(
      "getL3NetworkIpStatistic",
      { path: { l3NetworkUuid: cloud.l3NetworkUuid } },
    );
    return {
      availableMemory: Number(host.availableMemoryCapacity),
      vmIps: used.ipStatistics
        .filter((entry) => entry.resourceTypes.includes("VM"))
        .map((entry) => entry.ip),
    };
  }

  async function jobText(location: string) {
    const jobUuid = location.split("/").pop()!;
    const job = (
      await admin.query<{ progressText: string | null }>("queryApiJob", [`uuid=${jobUuid}`])
    ).inventories[0];
    return job?.progressText ?? "";
  }

  /** Creates a VM on a slowed node and returns its uuid and job location without waiting. */
  async function createVm(name: string) {
    const vmUuid = newUuid();
    const accepted = await admin.call<{ location: string }>("createVmInstance", {
      params: {
        name,
        resourceUuid: vmUuid,
        imageUuid: cloud.imageUuid,
        instanceOfferingUuid: cloud.instanceOfferingUuid,
        l3NetworkUuids: [cloud.l3NetworkUuid],
      },
      noWait: true,
    });
    return { vmUuid, location: accepted.location };
  }

  /** Restarts the node after a crash and waits for the job that the crash cut to end. */
  async function recover(location: string) {
    await start(0);
    return admin.waitForJob(location).then(
      () => "succeeded",
      (error: Error) => error.message,
    );
  }

  async function setConfig(category: string, name: string, value: string) {
    await admin.call("updateGlobalConfig", { path: { category, name }, params: { value } });
  }

  /** What a VM has on the host, read before a crash, since the rollback removes its rows. */
  async function remember(vmUuid: string) {
    const nics = await admin.query<Inventory>("queryVmNic", [`vmInstanceUuid=${vmUuid}`]);
    const volumes = await admin.query<Inventory>("queryVolume", [`vmInstanceUuid=${vmUuid}`]);
    return {
      taps: nics.inventories.map((nic) => String(nic.internalName)),
      volumeUuids: volumes.inventories.map((volume) => volume.uuid),
    };
  }

  /** Paths under the primary storage that name one of the volumes. */
  async function filesOf(volumeUuids: string[]) {
    const ps = (
      await admin.query<Inventory>("queryPrimaryStorage", [`uuid=${cloud.primaryStorageUuid}`])
    ).inventories[0]!;
    return readdirSync(String(ps.url), { recursive: true, encoding: "utf8" }).filter((path) =>
      volumeUuids.some((uuid) => path.includes(uuid)),
    );
  }

  async function expectNothingLeftOf(
    vmUuid: string,
    { taps, volumeUuids }: Awaited<ReturnType<typeof remember>>,
  ) {
    expect((await admin.query("queryVmInstance", [`uuid=${vmUuid}`])).inventories).toEqual([]);
    expect((await admin.query("queryVolume", [`vmInstanceUuid=${vmUuid}`])).inventories).toEqual(
      [],
    );
    expect(qemuPids(vmUuid)).toEqual([]);
    expect(taps.filter(linkExists)).toEqual([]);
    expect(await filesOf(volumeUuids)).toEqual([]);
    expect(await leftovers()).toEqual(baseline);
  }

  beforeAll(async () => {
    port = await freePort();
    await start(0);
    admin = new TstackClient({ endpoint: server.url, pollIntervalMs: 50 });
    await admin.logInByAccount("admin", ADMIN_PASSWORD);
    cloud = await buildCloud({ admin } as unknown as TestServer, "172.30.93.0/24");
    baseline = await leftovers();
  }, 300_000);

  afterAll(async () => {
    if (server?.child.exitCode === null && server.child.signalCode === null) {
      await cloud?.cleanup();
      await stop();
    }

    rmSync(dataDir, { recursive: true, force: true });
  });

  it("rolls back a create after allocation", async () => {
    await stop();
    await start(STEP_DELAY_MS);
    const { vmUuid, location } = await createVm("cut-after-allocation");

    await until(
      async () => (await jobText(location)).includes("preparing the root volume"),
      "the root volume step",
    );
    const left = await remember(vmUuid);
    await crash();

    expect(await recover(location)).toMatch(/restarted during create-vm; .* rolled back/);
    await expectNothingLeftOf(vmUuid, left);
  });

  // QEMU is spawned inside the start step; half a step delay later its callback has arrived
  // and the VM waits for the finish step, still Starting.
  it.each([
    ["at QEMU spawn", 0],
    ["before Running", STEP_DELAY_MS / 2],
  ])("rolls back a create %s", async (_when, waitMs) => {
    await stop();
    await start(STEP_DELAY_MS);
    const { vmUuid, location } = await createVm(`cut-${waitMs}`);

    await until(() => qemuPids(vmUuid).length > 0, "the QEMU process");
    await new Promise((done) => setTimeout(done, waitMs));
    const left = await remember(vmUuid);
    await crash();

    expect(await recover(location)).toMatch(/restarted during create-vm; .* rolled back/);
    await expectNothingLeftOf(vmUuid, left);
  });

  it("resumes a stop after restart", async () => {
    const { vmUuid, location } = await createVm("cut-stop");
    await admin.waitForJob(location);
    await stop();
    await start(STEP_DELAY_MS);

    const accepted = await admin.call<{ location: string }>("stopVmInstance", {
      path: { uuid: vmUuid },
      params: { type: "cold" },
      noWait: true,
    });
    await until(
      async () =>
        (await admin.query<Inventory>("queryVmInstance", [`uuid=${vmUuid}`])).inventories[0]
          ?.state === "Stopping",
      "the Stopping state",
    );
    await crash();

    expect(await recover(accepted.location)).toBe("succeeded");
    const vm = (await admin.query<Inventory>("queryVmInstance", [`uuid=${vmUuid}`]))
      .inventories[0]!;
    expect(vm.state).toBe("Stopped");
    expect(qemuPids(vmUuid)).toEqual([]);
    expect((await leftovers()).availableMemory).toBe(baseline.availableMemory);

    await admin.call("destroyVmInstance", { path: { uuid: vmUuid } });
    await admin.call("expungeVmInstance", { path: { uuid: vmUuid }, params: {} });
  });

  it("cleans a down host once back", async () => {
    await setConfig("host", "ping.interval", "1");
    await setConfig("host", "connection.autoReconnectOnError", "false");
    await stop();
    await start(STEP_DELAY_MS);
    const { vmUuid, location } = await createVm("host-down");

    await until(() => qemuPids(vmUuid).length > 0, "the QEMU process");
    const left = await remember(vmUuid);
    await crash();
    process.kill(runningAgentPid(cloud.agentDir)!, "SIGKILL");

    expect(await recover(location)).toMatch(/restarted during create-vm; .* rolled back/);
    expect(qemuPids(vmUuid)).toHaveLength(1);

    await setConfig("host", "connection.autoReconnectOnError", "true");
    await until(
      async () =>
        qemuPids(vmUuid).length === 0 &&
        !left.taps.some(linkExists) &&
        (await filesOf(left.volumeUuids)).length === 0,
      "the kept destroy after the reconnect",
    );
    await expectNothingLeftOf(vmUuid, left);
    await setConfig("host", "ping.interval", "60");
  });
});
