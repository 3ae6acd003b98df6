import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer, until } from "./harness.js";
import { buildSimulatorCloud } from "./simulator-cloud.js";

type Vm = { uuid: string; hostUuid: string; rootVolumeUuid: string } & Record<string, unknown>;
type Point = { time: number; value: number; labels: Record<string, string> };

const INTERVAL = 1;
const VMS = 6;
const WAIT_MS = 30_000;

describe("simulator metrics", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildSimulatorCloud>>;
  let vms: Vm[];
  let since: number;

  const metric = async (
    namespace: string,
    metricName: string,
    labels: string[],
    extra: Record<string, string> = {},
  ) =>
    (
      await admin.call<{ data: Point[] }>("getMetricData", {
        query: {
          namespace,
          metricName,
          labels,
          startTime: String(since),
          period: String(INTERVAL),
          ...extra,
        },
      })
    ).data;

  beforeAll(async () => {
    t = await startTestServer("sqlite");
    admin = t.admin;
    await admin.call("updateGlobalConfig", {
      path: { category: "monitoring", name: "interval" },
      params: { value: String(INTERVAL) },
    });
    since = Math.floor(Date.now() / 1000) - 60;
    cloud = await buildSimulatorCloud(admin, { hosts: 3, cidr: "10.201.0.0/24", prefix: "tmn" });
    vms = [];

    for (let index = 0; index < VMS; index++) {
      const reply = await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name: `tmn-vm-${index}`,
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
      });
      vms.push(reply.inventory);
    }
  }, 120_000);

  afterAll(async () => {
    await t?.stop();
  });

  it("reports every VM's CPU", async () => {
    const points = await until(
      () => metric("ZStack/VM", "CPUUsedUtilization", [], { groupBy: "VMUuid" }),
      (data) => new Set(data.map((point) => point.labels.VMUuid)).size === VMS,
      `CPU samples of ${VMS} simulator VMs`,
      WAIT_MS,
    );

    expect(new Set(points.map((point) => point.labels.VMUuid))).toEqual(
      new Set(vms.map((vm) => vm.uuid)),
    );
    expect(points.every((point) => point.value >= 0 && point.value <= 100)).toBe(true);
  });

  it("reports every host", async () => {
    const points = await until(
      () => metric("ZStack/Host", "MemoryUsedBytes", []),
      (data) => new Set(data.map((point) => point.labels.HostUuid)).size === cloud.hostUuids.length,
      "memory samples of every simulator host",
      WAIT_MS,
    );

    expect(new Set(points.map((point) => point.labels.HostUuid))).toEqual(new Set(cloud.hostUuids));
  });

  it("labels NICs with their tap names", async () => {
    const vm = vms[0]!;
    const nic = (vm.vmNics as { internalName: string }[])[0]!;
    const points = await until(
      () => metric("ZStack/VM", "NetworkOutBytes", [`VMUuid=${vm.uuid}`]),
      (data) => data.length > 0,
      "NIC samples of a simulator VM",
      WAIT_MS,
    );

    expect(points[0]!.labels.InterfaceName).toBe(nic.internalName);
  });

  it("reports root volume I/O", async () => {
    const vm = vms[0]!;
    const points = await until(
      () => metric("ZStack/Volume", "DiskWriteBytes", [`VolumeUuid=${vm.rootVolumeUuid}`]),
      (data) => data.length > 0,
      "root volume samples of a simulator VM",
      WAIT_MS,
    );

    expect(points[0]!.labels.VMUuid).toBe(vm.uuid);
    expect(points[0]!.value).toBeGreaterThan(0);
  });

  it("sums CPU over all VMs", async () => {
    const points = await metric("ZStack/VM", "CPUUsedUtilization", [], {
      aggregate: "sum",
      groupBy: "",
    });

    expect(points.length).toBeGreaterThan(0);
    expect(points.at(-1)!.labels).toEqual({});
  });
});
