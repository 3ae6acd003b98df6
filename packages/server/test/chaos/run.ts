import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { TstackClient } from "@tstack/sdk";
import { type FaultSpec, HttpSimulatorControl } from "@tstack/simulator";
import Database from "better-sqlite3";
import { freePort } from "../harness.js";
import { buildSimulatorCloud, type SimulatorCloud } from "../simulator-cloud.js";
import { checkInvariants, countUnsettled } from "./invariants.js";
import { type Child, killAndWait, launch, waitFor } from "./processes.js";

const SERVER_MAIN = resolve(import.meta.dirname, "../../dist/main.js");
const SIMULATOR_MAIN = resolve(import.meta.dirname, "../../../simulator/dist/main.js");
const ADMIN_PASSWORD = "password";

/** Faults the chaos injects: each ends within the timeouts the run sets, so operations settle. */
const FAULTS: FaultSpec[] = [
  { path: "/vm/start", kind: "fail", errorText: "chaos: QEMU failed", count: 2 },
  { path: "/vm/stop", kind: "fail", errorText: "chaos: stop failed", count: 2 },
  { path: "/vm/reboot", kind: "fail", errorText: "chaos: reboot failed", count: 2 },
  { path: "/vm/destroy", kind: "fail", errorText: "chaos: destroy failed", count: 1 },
  { path: "/vm/volume/attach", kind: "fail", errorText: "chaos: hotplug failed", count: 1 },
  { path: "/vm/volume/detach", kind: "fail", errorText: "chaos: unplug failed", count: 1 },
  { path: "/storage/volume/root/create", kind: "fail", errorText: "chaos: disk full", count: 2 },
  { path: "/network/dhcp/apply", kind: "fail", errorText: "chaos: dnsmasq died", count: 1 },
  { path: "/vm/start", kind: "drop-callback", count: 1 },
  { path: "/vm/start", kind: "timeout", count: 1 },
  { path: "*", kind: "delay", delayMs: 300, count: 20 },
];

/** Operation names, repeated by weight: `pick` draws creates three times as often as a stop. */
const WEIGHTS = [
  ...["create", "create", "create", "start", "stop", "reboot", "destroy", "expunge"],
  ...["createVolume", "deleteVolume", "expungeVolume", "attach", "attach", "detach"],
];

export interface ChaosOptions {
  /** Simulator hosts in the one cluster. */
  hosts: number;
  /** The L3 network's range; it bounds how many VMs can exist at once. */
  cidr: string;
  /** Concurrent API clients, each running one operation after another. */
  workers: number;
  /** The run ends after this many operations, or after `durationMs`, whichever comes first. */
  ops?: number;
  durationMs?: number;
  /** Milliseconds between a restart of the management node and its next SIGKILL. */
  killEveryMs: number;
  /** Time the node gets after the chaos to finish or fail every operation in flight. */
  settleMs: number;
  /** File to append the output of every tstack-server process to, across the restarts. */
  serverLog?: string;
  /** Called about every 100 operations with the counts so far. */
  onProgress?: (done: number, kills: number) => void;
}

export interface ChaosResult {
  violations: string[];
  kills: number;
  killTimes: string[];
  counts: Record<string, { ok: number; failed: number }>;
  operations: number;
  vms: number;
  volumes: number;
  chaosSeconds: number;
  settleSeconds: number;
}

const pick = <T>(items: T[]) => items[Math.floor(Math.random() * items.length)]!;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/**
 * Runs tstack-simulator and tstack-server as processes, builds a simulator cloud, then runs
 * random VM and volume operations while injecting random faults and SIGKILLing and restarting
 * the server. It then waits for every operation to settle and checks the invariants between the
 * database and the simulator. Both processes and the data directory are removed at the end.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const token = randomBytes(24).toString("hex");
  const dataDir = mkdtempSync(join(tmpdir(), "tsim-chaos-"));
  const simulatorUrl = `http://127.0.0.1:${await freePort()}`;
  const serverPort = await freePort();
  const serverUrl = `http://127.0.0.1:${serverPort}`;
  const control = new HttpSimulatorControl(simulatorUrl, token);
  let simulator: Child | undefined;
  let server: Child | undefined;

  const startServer = async () => {
    server = launch(
      [SERVER_MAIN, "--listen", `127.0.0.1:${serverPort}`, "--data-dir", dataDir],
      {
        TSTACK_SIMULATOR_URL: simulatorUrl,
        TSTACK_SIMULATOR_TOKEN: token,
        TSTACK_ADMIN_PASSWORD: ADMIN_PASSWORD,
        TSTACK_LOG_LEVEL: "warn",
      },
      options.serverLog,
    );
    const ready = async () =>
      (await fetch(`${serverUrl}/zstack/v1/management-nodes/ready`)).status === 200;
    await waitFor(ready, "tstack-server start", server);
  };

  try {
    simulator = launch(
      [SIMULATOR_MAIN, "--listen", simulatorUrl.replace("http://", ""), "--log-level", "warn"],
      { TSTACK_SIMULATOR_TOKEN: token },
    );
    await waitFor(
      async () => Array.isArray(await control.listFaults()),
      "simulator start",
      simulator,
    );
    await startServer();
    const admin = new TstackClient({ endpoint: serverUrl, pollIntervalMs: 50 });
    await admin.logInByAccount("admin", ADMIN_PASSWORD);
    await admin.call("updateGlobalConfig", {
      path: { category: "vm", name: "start.timeout" },
      params: { value: "10" },
    });
    const cloud = await buildSimulatorCloud(admin, {
      hosts: options.hosts,
      cidr: options.cidr,
      prefix: "tsimchaos",
    });

    const chaos = new Chaos(options, admin, control, cloud, async () => {
      await killAndWait(server);
      await startServer();
      await admin.logInByAccount("admin", ADMIN_PASSWORD);
    });
    const began = Date.now();
    await chaos.run();
    const chaosSeconds = (Date.now() - began) / 1000;
    await control.clearFaults();

    const db = new Database(join(dataDir, "tstack.db"), { readonly: true });

    try {
      const settleBegan = Date.now();

      while (countUnsettled(db) > 0 && Date.now() < settleBegan + options.settleMs) {
        await sleep(500);
      }

      const settleSeconds = (Date.now() - settleBegan) / 1000;
      const violations = await checkInvariants(db, control, cloud.hostUuids);
      const exited = server?.process.exitCode !== null || server?.process.signalCode !== null;

      if (exited) {
        violations.unshift(
          `tstack-server exited on its own (${server?.process.exitCode}); its last output: ${server?.output().slice(-3000)}`,
        );
      }

      return { ...chaos.summary(), violations, chaosSeconds, settleSeconds };
    } finally {
      db.close();
    }
  } finally {
    await killAndWait(server);
    await killAndWait(simulator);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The random operations, fault injection and kills of one chaos run. */
class Chaos {
  private readonly counts: Record<string, { ok: number; failed: number }> = {};
  private readonly vms: string[] = [];
  private readonly volumes: string[] = [];
  private readonly killTimes: string[] = [];
  private readonly deadline: number;
  private started = 0;
  private serverUp = true;

  constructor(
    private readonly options: ChaosOptions,
    private readonly admin: TstackClient,
    private readonly control: HttpSimulatorControl,
    private readonly cloud: SimulatorCloud,
    private readonly restartServer: () => Promise<void>,
  ) {
    this.deadline = Date.now() + (options.durationMs ?? Number.POSITIVE_INFINITY);
  }

  private get finished() {
    return Date.now() >= this.deadline || this.started >= (this.options.ops ?? Infinity);
  }

  async run() {
    const workers = Array.from({ length: this.options.workers }, () => this.worker());
    await Promise.all([...workers, this.injector(), this.killer()]);
  }

  summary() {
    return {
      kills: this.killTimes.length,
      killTimes: this.killTimes,
      counts: this.counts,
      operations: this.started,
      vms: this.vms.length,
      volumes: this.volumes.length,
    };
  }

  private async worker() {
    while (!this.finished) {
      if (!this.serverUp) {
        await sleep(100);
        continue;
      }

      let name = pick(WEIGHTS);

      if (this.vms.length === 0) {
        name = "create";
      } else if (this.volumes.length === 0) {
        name = "createVolume";
      }

      const tally = this.counts[name] ?? { ok: 0, failed: 0 };
      this.counts[name] = tally;
      this.started++;

      if (this.started % 100 === 0) {
        this.options.onProgress?.(this.started, this.killTimes.length);
      }

      await this.operation(name).then(
        () => tally.ok++,
        () => tally.failed++,
      );
    }
  }

  private operation(name: string): Promise<unknown> {
    const call = (api: string, options: Parameters<TstackClient["call"]>[1]) =>
      this.admin.call<{ inventory: { uuid: string } }>(api, options);

    switch (name) {
      case "create":
        return call("createVmInstance", {
          params: {
            name: `tsimchaos-vm-${randomBytes(3).toString("hex")}`,
            imageUuid: this.cloud.imageUuid,
            instanceOfferingUuid: this.cloud.instanceOfferingUuid,
            l3NetworkUuids: [this.cloud.l3NetworkUuid],
          },
        }).then((reply) => this.vms.push(reply.inventory.uuid));
      case "start":
        return call("startVmInstance", { path: { uuid: pick(this.vms) }, params: {} });
      case "stop":
        return call("stopVmInstance", { path: { uuid: pick(this.vms) }, params: {} });
      case "reboot":
        return call("rebootVmInstance", { path: { uuid: pick(this.vms) }, params: {} });
      case "destroy":
        return call("destroyVmInstance", { path: { uuid: pick(this.vms) } });
      case "expunge":
        return call("expungeVmInstance", { path: { uuid: pick(this.vms) }, params: {} });
      case "createVolume":
        return call("createDataVolume", {
          params: {
            name: `tsimchaos-volume-${randomBytes(3).toString("hex")}`,
            diskSize: 1024 ** 3,
            primaryStorageUuid: this.cloud.primaryStorageUuid,
          },
        }).then((reply) => this.volumes.push(reply.inventory.uuid));
      case "deleteVolume":
        return call("deleteDataVolume", { path: { uuid: pick(this.volumes) } });
      case "expungeVolume":
        return call("expungeDataVolume", { path: { uuid: pick(this.volumes) }, params: {} });
      case "attach":
        return call("attachDataVolumeToVm", {
          path: { volumeUuid: pick(this.volumes), vmInstanceUuid: pick(this.vms) },
          params: {},
        });
      case "detach":
        return call("detachDataVolumeFromVm", { path: { uuid: pick(this.volumes) } });
      default:
        throw new Error(`unknown chaos operation ${name}`);
    }
  }

  private async injector() {
    while (!this.finished) {
      const resourceUuid = pick([undefined, ...this.cloud.hostUuids]);
      await this.control.createFault({ ...pick(FAULTS), resourceUuid }).catch(() => undefined);
      await sleep(1500);
    }
  }

  private async killer() {
    for (;;) {
      await sleep(this.options.killEveryMs);

      if (this.finished) {
        return;
      }

      this.serverUp = false;
      this.killTimes.push(new Date().toISOString());
      await this.restartServer();
      this.serverUp = true;
    }
  }
}
