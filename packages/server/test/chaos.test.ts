import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { TstackClient } from "@tstack/sdk";
import { type FaultSpec, HttpSimulatorControl } from "@tstack/simulator";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "./harness.js";
import { buildSimulatorCloud } from "./simulator-cloud.js";

const SERVER_MAIN = resolve(import.meta.dirname, "../dist/main.js");
const SIMULATOR_MAIN = resolve(import.meta.dirname, "../../simulator/dist/main.js");
const ADMIN_PASSWORD = "password";

/** How long the random operations run; the SIGKILLs happen inside this window. */
const CHAOS_MS = 30_000;
const KILL_EVERY_MS = 9_000;
const WORKERS = 8;
/** Time the node gets after the chaos to finish or fail every operation in flight. */
const SETTLE_MS = 60_000;

const INTERMEDIATE_VM_STATES = [
  "Starting",
  "Stopping",
  "Rebooting",
  "Pausing",
  "Resuming",
  "Destroying",
  "Migrating",
  "Expunging",
  "VolumeMigrating",
  "VolumeRecovering",
];

/** Faults the chaos injects: each ends within the timeouts the test sets, so operations settle. */
const FAULTS: FaultSpec[] = [
  { path: "/vm/start", kind: "fail", errorText: "chaos: QEMU failed", count: 2 },
  { path: "/vm/stop", kind: "fail", errorText: "chaos: stop failed", count: 2 },
  { path: "/vm/reboot", kind: "fail", errorText: "chaos: reboot failed", count: 2 },
  { path: "/vm/destroy", kind: "fail", errorText: "chaos: destroy failed", count: 1 },
  { path: "/storage/volume/root/create", kind: "fail", errorText: "chaos: disk full", count: 2 },
  { path: "/network/dhcp/apply", kind: "fail", errorText: "chaos: dnsmasq died", count: 1 },
  { path: "/vm/start", kind: "drop-callback", count: 1 },
  { path: "/vm/start", kind: "timeout", count: 1 },
  { path: "*", kind: "delay", delayMs: 300, count: 20 },
];

interface Child {
  process: ChildProcess;
  output: () => string;
}

function launch(args: string[], env: Record<string, string>): Child {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  return { process: child, output: () => output };
}

async function waitFor(check: () => Promise<boolean>, what: string, child: Child) {
  for (let attempt = 0; attempt < 400; attempt++) {
    if (child.process.exitCode !== null) {
      throw new Error(
        `${what}: the process exited with ${child.process.exitCode}: ${child.output()}`,
      );
    }

    if (await check().catch(() => false)) {
      return;
    }

    await new Promise((done) => setTimeout(done, 50));
  }

  throw new Error(`${what} did not happen: ${child.output()}`);
}

function killAndWait(child: Child | undefined) {
  if (!child || child.process.exitCode !== null || child.process.signalCode !== null) {
    return Promise.resolve();
  }

  return new Promise<void>((done) => {
    child.process.once("exit", () => done());
    child.process.kill("SIGKILL");
  });
}

const pick = <T>(items: T[]) => items[Math.floor(Math.random() * items.length)]!;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

describe("chaos", () => {
  const token = randomBytes(24).toString("hex");
  const dataDir = mkdtempSync(join(tmpdir(), "tsim-chaos-"));
  let simulator: Child | undefined;
  let server: Child | undefined;

  afterAll(async () => {
    await killAndWait(server);
    await killAndWait(simulator);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("keeps every invariant through faults and SIGKILLs", async () => {
    const simulatorPort = await freePort();
    const serverPort = await freePort();
    const simulatorUrl = `http://127.0.0.1:${simulatorPort}`;
    const serverUrl = `http://127.0.0.1:${serverPort}`;
    const control = new HttpSimulatorControl(simulatorUrl, token);

    simulator = launch(
      [SIMULATOR_MAIN, "--listen", `127.0.0.1:${simulatorPort}`, "--log-level", "warn"],
      { TSTACK_SIMULATOR_TOKEN: token },
    );
    await waitFor(
      async () => Array.isArray(await control.listFaults()),
      "simulator start",
      simulator,
    );

    const startServer = async () => {
      server = launch([SERVER_MAIN, "--listen", `127.0.0.1:${serverPort}`, "--data-dir", dataDir], {
        TSTACK_SIMULATOR_URL: simulatorUrl,
        TSTACK_SIMULATOR_TOKEN: token,
        TSTACK_ADMIN_PASSWORD: ADMIN_PASSWORD,
        TSTACK_LOG_LEVEL: "warn",
      });
      const ready = async () =>
        (await fetch(`${serverUrl}/zstack/v1/management-nodes/ready`)).status === 200;
      await waitFor(ready, "tstack-server start", server);
    };

    await startServer();
    const admin = new TstackClient({ endpoint: serverUrl, pollIntervalMs: 50 });
    await admin.logInByAccount("admin", ADMIN_PASSWORD);
    await admin.call("updateGlobalConfig", {
      path: { category: "vm", name: "start.timeout" },
      params: { value: "10" },
    });
    const cloud = await buildSimulatorCloud(admin, {
      hosts: 10,
      cidr: "10.62.0.0/22",
      prefix: "tsimchaos",
    });

    const counts: Record<string, { ok: number; failed: number }> = {};
    const known: string[] = [];
    const volumes: string[] = [];
    const deadline = Date.now() + CHAOS_MS;
    let serverUp = true;

    const operations: Record<string, () => Promise<unknown>> = {
      create: async () => {
        const reply = await admin.call<{ inventory: { uuid: string } }>("createVmInstance", {
          params: {
            name: `tsimchaos-vm-${randomBytes(3).toString("hex")}`,
            imageUuid: cloud.imageUuid,
            instanceOfferingUuid: cloud.instanceOfferingUuid,
            l3NetworkUuids: [cloud.l3NetworkUuid],
          },
        });
        known.push(reply.inventory.uuid);
      },
      start: () => admin.call("startVmInstance", { path: { uuid: pick(known) }, params: {} }),
      stop: () => admin.call("stopVmInstance", { path: { uuid: pick(known) }, params: {} }),
      reboot: () => admin.call("rebootVmInstance", { path: { uuid: pick(known) }, params: {} }),
      destroy: () => admin.call("destroyVmInstance", { path: { uuid: pick(known) } }),
      expunge: () => admin.call("expungeVmInstance", { path: { uuid: pick(known) }, params: {} }),
      createVolume: async () => {
        const reply = await admin.call<{ inventory: { uuid: string } }>("createDataVolume", {
          params: {
            name: `tsimchaos-volume-${randomBytes(3).toString("hex")}`,
            diskSize: 1024 ** 3,
            primaryStorageUuid: cloud.primaryStorageUuid,
          },
        });
        volumes.push(reply.inventory.uuid);
      },
      deleteVolume: () => admin.call("deleteDataVolume", { path: { uuid: pick(volumes) } }),
      expungeVolume: () =>
        admin.call("expungeDataVolume", { path: { uuid: pick(volumes) }, params: {} }),
    };
    // Data volumes cannot be attached to VMs through the API yet, so they are only made and removed.
    const weights = [
      ...["create", "create", "create", "start", "stop", "reboot", "destroy", "expunge"],
      ...["createVolume", "deleteVolume", "expungeVolume"],
    ];

    const worker = async () => {
      while (Date.now() < deadline) {
        let name = pick(weights);

        if (known.length === 0) {
          name = "create";
        } else if (volumes.length === 0) {
          name = "createVolume";
        }

        const tally = counts[name] ?? { ok: 0, failed: 0 };
        counts[name] = tally;

        if (!serverUp) {
          await sleep(100);
          continue;
        }

        await operations[name]!().then(
          () => tally.ok++,
          () => tally.failed++,
        );
      }
    };

    const injector = async () => {
      while (Date.now() < deadline) {
        await control
          .createFault({ ...pick(FAULTS), resourceUuid: pick([undefined, ...cloud.hostUuids]) })
          .catch(() => undefined);
        await sleep(1500);
      }
    };

    let kills = 0;
    const killTimes: string[] = [];
    const killer = async () => {
      while (Date.now() + KILL_EVERY_MS < deadline) {
        await sleep(KILL_EVERY_MS);
        serverUp = false;
        await killAndWait(server);
        kills++;
        killTimes.push(new Date().toISOString());
        await startServer();
        await admin.logInByAccount("admin", ADMIN_PASSWORD);
        serverUp = true;
      }
    };

    await Promise.all([...Array.from({ length: WORKERS }, worker), injector(), killer()]);
    await control.clearFaults();

    const db = new Database(join(dataDir, "tstack.db"), { readonly: true });

    try {
      const unsettled = () =>
        db
          .prepare(
            `select uuid, state from vmInstances where state in (${INTERMEDIATE_VM_STATES.map(() => "?").join(",")})`,
          )
          .all(...INTERMEDIATE_VM_STATES).length +
        db.prepare("select uuid from apiJobs where state in ('Pending', 'Running')").all().length;
      const settleBy = Date.now() + SETTLE_MS;

      while (unsettled() > 0 && Date.now() < settleBy) {
        await sleep(500);
      }

      const violations = await checkInvariants(db, control, cloud.hostUuids);

      if (server?.process.exitCode !== null || server?.process.signalCode !== null) {
        violations.unshift(
          `tstack-server exited on its own (${server?.process.exitCode}); its last output: ${server?.output().slice(-3000)}`,
        );
      }

      const summary = { kills, killTimes, counts, vms: known.length, volumes: volumes.length };

      expect(kills).toBeGreaterThan(0);
      expect(violations, JSON.stringify(summary)).toEqual([]);
    } finally {
      db.close();
    }
  }, 180_000);
});

type Row = Record<string, unknown>;

/** Lists every broken invariant between the database and the simulator, one line each. */
async function checkInvariants(
  db: Database.Database,
  control: HttpSimulatorControl,
  hostUuids: string[],
) {
  const violations: string[] = [];
  const all = (sql: string, ...params: unknown[]) => db.prepare(sql).all(...params) as Row[];

  for (const vm of all("select uuid, state, lastOpDate from vmInstances")) {
    if (INTERMEDIATE_VM_STATES.includes(String(vm.state))) {
      // The workflows that touched the VM show where it stopped: step count, state, error, node.
      const workflows = all(
        "select name, state, completedSteps, error, managementNodeUuid, lastOpDate from workflows where data like ?",
        `%${String(vm.uuid)}%`,
      );
      violations.push(
        `VM ${vm.uuid} is still ${vm.state} since ${vm.lastOpDate}; workflows: ${JSON.stringify(workflows)}`,
      );
    }
  }

  for (const volume of all(
    "select uuid, type, vmInstanceUuid, status, createDate, lastOpDate from volumes where status in ('Creating', 'Deleting')",
  )) {
    violations.push(
      `${volume.type} volume ${volume.uuid} (VM ${volume.vmInstanceUuid}) is still ${volume.status} since ${volume.lastOpDate}, created ${volume.createDate}`,
    );
  }

  for (const host of all("select uuid, status from hosts where status != 'Connected'")) {
    violations.push(`host ${host.uuid} is ${host.status}`);
  }

  for (const image of all("select uuid, status from images where status = 'Downloading'")) {
    violations.push(`image ${image.uuid} is ${image.status}`);
  }

  for (const job of all(
    "select uuid, apiName, state, managementNodeUuid, createDate from apiJobs where state in ('Pending', 'Running')",
  )) {
    violations.push(
      `job ${job.uuid} (${job.apiName}, node ${job.managementNodeUuid}, created ${job.createDate}) never ended: ${job.state}`,
    );
  }

  for (const host of all(
    `select h.uuid, c.totalCpu - c.availableCpu as usedCpu, c.totalMemory - c.availableMemory as usedMemory,
       (select coalesce(sum(cpuNum), 0) from vmInstances v where v.hostUuid = h.uuid) as vmCpu,
       (select coalesce(sum(memorySize), 0) from vmInstances v where v.hostUuid = h.uuid) as vmMemory
     from hosts h join hostCapacities c on c.uuid = h.uuid`,
  )) {
    if (host.usedCpu !== host.vmCpu || host.usedMemory !== host.vmMemory) {
      violations.push(
        `host ${host.uuid} uses ${host.usedCpu} CPUs and ${host.usedMemory} bytes, but its VMs have ${host.vmCpu} and ${host.vmMemory}`,
      );
    }
  }

  for (const row of all(
    "select ip, count(*) as n from vmNics group by l3NetworkUuid, ip having n > 1",
  )) {
    violations.push(`IP ${row.ip} is on ${row.n} NICs`);
  }

  for (const row of all("select mac, count(*) as n from vmNics group by mac having n > 1")) {
    violations.push(`MAC ${row.mac} is on ${row.n} NICs`);
  }

  for (const row of all(
    `select u.ip, u.vmNicUuid from usedIps u where u.usedFor = 'VmNic'
       and not exists (select 1 from vmNics n join vmInstances v on v.uuid = n.vmInstanceUuid where n.uuid = u.vmNicUuid)`,
  )) {
    violations.push(`IP ${row.ip} is held by NIC ${row.vmNicUuid} of no existing VM`);
  }

  const vmsByHost = new Map<string, Set<string>>();

  for (const vm of all(
    "select uuid, hostUuid from vmInstances where state in ('Running', 'Paused')",
  )) {
    const set = vmsByHost.get(String(vm.hostUuid)) ?? new Set<string>();
    set.add(String(vm.uuid));
    vmsByHost.set(String(vm.hostUuid), set);
  }

  const volumeUuids = new Set(all("select uuid from volumes").map((row) => String(row.uuid)));
  const macs = new Set(all("select mac from vmNics").map((row) => String(row.mac)));

  for (const node of await control.state()) {
    if (node.kind === "host" && hostUuids.includes(node.uuid)) {
      const expected = vmsByHost.get(node.uuid) ?? new Set<string>();
      const actual = new Set((node.vms ?? []).map((vm) => vm.vmUuid));

      for (const vmUuid of actual) {
        if (!expected.has(vmUuid)) {
          violations.push(
            `simulator host ${node.uuid} runs VM ${vmUuid}, which the database does not have running there`,
          );
        }
      }

      for (const vmUuid of expected) {
        if (!actual.has(vmUuid)) {
          violations.push(
            `VM ${vmUuid} is running on host ${node.uuid} in the database, but not on the simulator`,
          );
        }
      }

      for (const entries of Object.values(node.dhcp ?? {})) {
        for (const mac of Object.keys(entries)) {
          if (!macs.has(mac)) {
            violations.push(
              `simulator host ${node.uuid} keeps a DHCP entry for unknown MAC ${mac}`,
            );
          }
        }
      }
    }

    if (node.kind === "primary") {
      for (const volume of node.volumes ?? []) {
        if (!volumeUuids.has(volume.volumeUuid)) {
          violations.push(
            `simulator primary storage ${node.uuid} keeps volume ${volume.volumeUuid}, which the database does not have`,
          );
        }
      }
    }
  }

  return violations;
}
