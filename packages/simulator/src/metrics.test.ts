import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { verifyRequest } from "@tstack/agent/auth";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MetricsPusher, type PushedBatch } from "./metrics.js";
import type { SimHost, SimVm } from "./state.js";

const uuid = () => randomBytes(16).toString("hex");
const INTERVAL = 10;

interface Received {
  url: string;
  headers: IncomingMessage["headers"];
  batch: PushedBatch;
  verified: boolean;
}

function simHost(pushUrl: string): SimHost {
  const id = uuid();
  return {
    uuid: id,
    secret: uuid(),
    cpuNum: 4,
    memoryBytes: 16 * 1024 ** 3,
    hostUuid: id,
    sendCommandUrl: null,
    bootId: uuid(),
    vms: new Map(),
    bridges: new Map(),
    dhcp: new Map(),
    userdata: new Map(),
    nat: new Set(),
    securityGroupNics: new Map(),
    remoteGroups: new Map(),
    localFiles: new Map(),
    monitoring: { intervalSeconds: INTERVAL, pushUrl },
  };
}

function simVm(volumeUuid: string): SimVm {
  return {
    vmUuid: uuid(),
    state: "Running",
    cpuNum: 2,
    memoryMiB: 512,
    disks: [`/sim/primary/rootVolumes/acct-a/vol-${volumeUuid}/root.qcow2`, "/sim/iso/x.iso"],
    macs: ["fa:16:3e:00:00:01"],
    tapNames: ["tap0123456789ab"],
    vncPort: 5900,
  };
}

describe("MetricsPusher", () => {
  const received: Received[] = [];
  const secrets = new Map<string, string>();
  let server: Server;
  let url = "";
  let host: SimHost;
  let vm: SimVm;
  let down = false;
  const volumeUuid = uuid();
  const pusher = new MetricsPusher({
    hosts: () => [host],
    isDown: () => down,
    log: pino({ level: "silent" }),
  });

  beforeAll(async () => {
    server = createServer((request, response) => {
      let text = "";
      request.on("data", (chunk) => {
        text += chunk;
      });
      request.on("end", () => {
        const batch = JSON.parse(text) as PushedBatch;
        const secret = secrets.get(batch.hostUuid) ?? "";
        const verified = verifyRequest(secret, "POST", request.url ?? "", text, request.headers);
        received.push({
          url: request.url ?? "",
          headers: request.headers,
          batch,
          verified: verified.ok,
        });
        response.end("{}");
      });
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/zstack/asyncrest/monitoring`;
    host = simHost(`${url}/x`);
    host.monitoring!.pushUrl = `${url}/${host.uuid}`;
    secrets.set(host.uuid, host.secret);
    vm = simVm(volumeUuid);
    host.vms.set(vm.vmUuid, vm);
  });

  afterAll(async () => {
    await new Promise((done) => server.close(done));
  });

  it("pushes once per interval", async () => {
    const start = 1_000_000;

    // The first push falls somewhere in the first interval, then every interval after it.
    for (let time = start; time < start + INTERVAL * 1000; time += 1000) {
      await pusher.tick(time);
    }

    await pusher.tick(start + INTERVAL * 1000 - 1);

    expect(received).toHaveLength(1);

    await pusher.tick(start + 2 * INTERVAL * 1000);

    expect(received).toHaveLength(2);
  });

  it("signs the batch with the host secret", () => {
    expect(received[0]!.verified).toBe(true);
    expect(received[0]!.url).toBe(`/zstack/asyncrest/monitoring/${host.uuid}`);
    expect(received[0]!.headers.commandpath).toBe("/monitoring/samples");
  });

  it("reports host, VM, NIC and volume series", () => {
    const { samples, hostUuid, intervalSeconds } = received[0]!.batch;
    const names = (namespace: string) =>
      samples.filter((sample) => sample.namespace === namespace).map((sample) => sample.metricName);

    expect(hostUuid).toBe(host.uuid);
    expect(intervalSeconds).toBe(INTERVAL);
    expect(names("ZStack/Host")).toContain("CPUUsedUtilization");
    expect(names("ZStack/Host")).toContain("MemoryAvailableBytes");
    expect(names("ZStack/VM")).toContain("CPUUsedUtilization");
    expect(names("ZStack/VM")).toContain("CPUTimeSeconds");
    expect(names("ZStack/VM")).toContain("MemoryUsedBytes");
    expect(names("ZStack/VM")).toContain("NetworkOutBytes");
    expect(names("ZStack/Volume")).toEqual([
      "DiskReadBytes",
      "DiskWriteBytes",
      "DiskReadOps",
      "DiskWriteOps",
    ]);
    expect(samples.every((sample) => Number.isFinite(sample.value) && sample.value >= 0)).toBe(
      true,
    );
  });

  it("labels NICs by tap and volumes by path", () => {
    const { samples } = received[0]!.batch;
    const nic = samples.find(
      (sample) => sample.metricName === "NetworkInBytes" && sample.labels.VMUuid,
    );
    const volume = samples.find((sample) => sample.namespace === "ZStack/Volume");

    expect(nic?.labels).toEqual({ VMUuid: vm.vmUuid, InterfaceName: "tap0123456789ab" });
    expect(volume?.labels).toEqual({ VolumeUuid: volumeUuid, VMUuid: vm.vmUuid });
  });

  it("accumulates VM CPU time", () => {
    const cpuTime = (batch: PushedBatch) =>
      batch.samples.find((sample) => sample.metricName === "CPUTimeSeconds")!.value;

    expect(cpuTime(received[1]!.batch)).toBeGreaterThan(cpuTime(received[0]!.batch));
  });

  it("skips a host that is down", async () => {
    down = true;
    await pusher.tick(1_000_000 + 3 * INTERVAL * 1000);
    down = false;

    expect(received).toHaveLength(2);
  });

  it("pushes nothing without a push URL", async () => {
    host.monitoring = { intervalSeconds: INTERVAL, pushUrl: null };
    await pusher.tick(1_000_000 + 10 * INTERVAL * 1000);

    expect(received).toHaveLength(2);
  });
});
