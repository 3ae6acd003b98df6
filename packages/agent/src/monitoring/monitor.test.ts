import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitFor } from "../../test/helpers.js";
import { signRequest, verifyRequest } from "../auth.js";
import { buildServer } from "../server/app.js";
import { saveConnection } from "../server/connection.js";
import { Reporter } from "../server/reporter.js";
import { QemuDriver } from "../vm/index.js";
import { Monitor } from "./monitor.js";
import type { MetricBatch } from "./types.js";

const secret = "test-secret-0123456789abcdef";
const logger = pino({ level: process.env.TSTACK_TEST_LOG ?? "silent" });
const hostUuid = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const vmUuid = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const volumeUuid = "cccccccccccccccccccccccccccccccc";
const storageUuid = "dddddddddddddddddddddddddddddddd";

let dir: string;
let receiver: Server;
let pushUrl: string;
let batches: { batch: MetricBatch; signed: boolean; commandPath: unknown }[];
let monitor: Monitor;
let driver: QemuDriver;

// The test process plays the VM's QEMU process, so /proc has real counters for it. Only the
// QMP reply is a fixture.
function fakeVms() {
  let written = 0;

  return {
    async runningVms() {
      return [
        {
          vmUuid,
          pid: process.pid,
          cpuNum: 1,
          diskPaths: [`/ps/rootVolumes/acct-x/vol-${volumeUuid}/${volumeUuid}.qcow2`],
          tapNames: ["lo"],
        },
      ];
    },
    async queryBlockStats() {
      written += 4096;
      return [
        {
          device: "disk0",
          stats: {
            rd_bytes: 0,
            wr_bytes: written,
            rd_operations: 0,
            wr_operations: written / 4096,
          },
        },
      ];
    },
  };
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tmon-"));
  batches = [];
  receiver = createServer((request, response) => {
    let text = "";
    request.setEncoding("utf8");
    request.on("data", (chunk: string) => {
      text += chunk;
    });
    request.on("end", () => {
      const signed = verifyRequest(secret, "POST", request.url!, text, request.headers).ok;
      batches.push({ batch: JSON.parse(text), signed, commandPath: request.headers.commandpath });
      response.end("{}");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  pushUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/samples/${hostUuid}`;
  await saveConnection(dir, { hostUuid, sendCommandUrl: "http://127.0.0.1:1/unused" });
  driver = new QemuDriver({ dataDir: dir, accel: "tcg", logger, onReport: () => undefined });
  monitor = new Monitor({ dataDir: dir, secret: () => secret, logger, driver, vms: fakeVms() });
});

afterEach(async () => {
  monitor.stop();
  driver.close();
  await new Promise((resolve) => receiver.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

describe("monitor", () => {
  it("pushes signed batches each interval", async () => {
    await monitor.start();
    await monitor.configure({
      intervalSeconds: 1,
      pushUrl,
      primaryStorages: [{ uuid: storageUuid, root: dir }],
    });

    await waitFor(
      "two metric batches",
      async () => batches.length,
      (count) => count >= 2,
      10_000,
    );
    const second = batches[1]!;
    const names = second.batch.samples.map((sample) => `${sample.namespace} ${sample.metricName}`);

    expect(second.signed).toBe(true);
    expect(second.commandPath).toBe("/monitoring/samples");
    expect(second.batch.hostUuid).toBe(hostUuid);
    expect(names).toContain("ZStack/Host CPUUsedUtilization");
    expect(names).toContain("ZStack/Host DiskFreeCapacityInBytes");
    expect(names).toContain("ZStack/VM CPUUsedUtilization");
    expect(names).toContain("ZStack/VM MemoryUsedBytes");
    expect(names).toContain("ZStack/Volume DiskWriteBytes");
  });

  it("keeps the configuration across restarts", async () => {
    await monitor.start();
    await monitor.configure({ intervalSeconds: 7, pushUrl: null, primaryStorages: [] });
    monitor.stop();

    const restarted = new Monitor({
      dataDir: dir,
      secret: () => secret,
      logger,
      driver,
      vms: fakeVms(),
    });
    await restarted.start();
    restarted.stop();

    expect(restarted.config?.intervalSeconds).toBe(7);
  });

  it("serves metrics and takes config over HTTP", async () => {
    const app = buildServer({
      dataDir: dir,
      secret: () => secret,
      driver,
      reporter: new Reporter(() => secret, logger),
      logger,
      collectFacts: () => Promise.reject(new Error("not used")),
      monitor,
    });

    try {
      const metrics = await app.inject({ method: "GET", url: "/metrics" });
      const unsigned = await app.inject({
        method: "POST",
        url: "/monitoring/config",
        payload: { intervalSeconds: 1, pushUrl: null, primaryStorages: [] },
      });

      expect(metrics.statusCode).toBe(200);
      expect(metrics.headers["content-type"]).toMatch(/^text\/plain; version=0.0.4/);
      expect(metrics.body).toContain(`tstack_vm_memory_resident_bytes{vm_uuid="${vmUuid}"}`);
      expect(unsigned.statusCode).toBe(401);

      const body = JSON.stringify({ intervalSeconds: 0, pushUrl: null, primaryStorages: [] });
      const invalid = await app.inject({
        method: "POST",
        url: "/monitoring/config",
        payload: body,
        headers: {
          "content-type": "application/json",
          ...signRequest(secret, "POST", "/monitoring/config", body),
        },
      });

      expect(invalid.statusCode).toBe(400);
      expect(invalid.json().error).toMatch(/invalid intervalSeconds 0: expected an integer from 1/);
    } finally {
      await app.close();
    }
  });
});
