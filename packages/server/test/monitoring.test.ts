import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { sha512Hex } from "@tstack/api";
import { ApiRequestError, type TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCloud } from "./cloud.js";
import { type Dialect, dialects, startTestServer, type TestServer, until } from "./harness.js";

type Inventory = { uuid: string } & Record<string, unknown>;
type Point = { time: number; value: number; labels: Record<string, string> };
type Alarm = Inventory & { status: string; state: string };

// In runs on a 2-vCPU machine at load average 5 to 7, an idle busybox guest cost its QEMU 0 to
// 1.5% of a core and the busy loop 30 to 50%, so 20% separates them.
const CPU_THRESHOLD = 20;
// Collections every 2 s keep the test short while leaving the agent room on a loaded machine.
const INTERVAL = 2;
// Guest uptime seconds the busy loop runs: long enough for the alarm's two 2 s windows to
// breach on a slow TCG guest, short enough to see the alarm return to OK.
const LOAD_SECONDS = 40;
const CIDR = "172.30.149.0/24";

async function expectApiError(promise: Promise<unknown>, code: string, details?: RegExp) {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error, `expected ${code}`).toBeInstanceOf(ApiRequestError);
  expect((error as ApiRequestError).code).toBe(code);

  if (details) {
    expect((error as ApiRequestError).details).toMatch(details);
  }
}

/** Starts a webhook receiver on 127.0.0.1 that keeps every event body it gets. */
async function startReceiver() {
  const events: { path: string; createDate: string; content: Record<string, unknown> }[] = [];
  const server: Server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      events.push(JSON.parse(body));
      response.end("ok");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));

  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    events,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

async function setConfig(admin: TstackClient, name: string, value: string) {
  await admin.call("updateGlobalConfig", {
    path: { category: "monitoring", name },
    params: { value },
  });
}

async function tenantClient(t: TestServer, name: string) {
  await t.admin.call("createAccount", { params: { name, password: sha512Hex(`${name}-pw`) } });
  const client = t.client();
  await client.logInByAccount(name, `${name}-pw`);
  return client;
}

describe.each(dialects)("zwatch API on %s", (dialect: Dialect) => {
  let t: TestServer;
  let admin: TstackClient;
  let tenant: TstackClient;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = t.admin;
    tenant = await tenantClient(t, "tmon-tenant");
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("metadata lists metrics and labels", async () => {
    const { metrics } = await admin.call<{ metrics: Record<string, unknown>[] }>(
      "getMetricMetadata",
      { query: { namespace: "ZStack/Volume" } },
    );
    const write = metrics.find((metric) => metric.name === "DiskWriteBytes");

    expect(metrics.every((metric) => metric.namespace === "ZStack/Volume")).toBe(true);
    expect(write?.labelNames).toEqual(["VolumeUuid", "VMUuid"]);
    expect(write?.unit).toBe("bytes/s");
  });

  it("bad queries name the parameter", async () => {
    const now = Math.floor(Date.now() / 1000);
    const base = { namespace: "ZStack/VM", metricName: "CPUUsedUtilization" };
    const cases: [Record<string, string>, RegExp][] = [
      [{ ...base, namespace: "ZStack/Nope" }, /invalid namespace/],
      [{ ...base, metricName: "Nope" }, /invalid metricName/],
      [{ ...base, labels: "Color=red" }, /invalid labels/],
      [{ ...base, startTime: String(now - 60), endTime: String(now - 120) }, /invalid endTime/],
      [{ ...base, period: "1" }, /invalid period "1"/],
      [{ ...base, startTime: String(now - 25 * 3600) }, /invalid startTime/],
    ];

    for (const [query, details] of cases) {
      await expectApiError(admin.call("getMetricData", { query }), "SYS.1007", details);
    }
  });

  it("host metrics are admin only", async () => {
    await expectApiError(
      tenant.call("getMetricData", {
        query: { namespace: "ZStack/Host", metricName: "CPUUsedUtilization" },
      }),
      "ID.1002",
    );
  });

  it("alarm lifecycle and validation", async () => {
    const alarm = (
      await tenant.call<{ inventory: Alarm }>("createAlarm", {
        params: {
          name: "busy",
          namespace: "ZStack/VM",
          metricName: "CPUUsedUtilization",
          comparisonOperator: "GreaterThan",
          threshold: 80,
          period: 60,
          repeatCount: 3,
          labels: [{ key: "VMUuid", op: "Equal", value: "0123456789abcdef0123456789abcdef" }],
        },
      })
    ).inventory;

    expect(alarm.status).toBe("InsufficientData");
    expect(alarm.state).toBe("Enabled");
    expect((await admin.query("queryAlarm", [`uuid=${alarm.uuid}`])).inventories).toHaveLength(1);

    const updated = await tenant.call<{ inventory: Alarm & { threshold: number } }>("updateAlarm", {
      path: { uuid: alarm.uuid },
      params: { threshold: 90 },
    });
    const disabled = await tenant.call<{ inventory: Alarm }>("changeAlarmState", {
      path: { uuid: alarm.uuid },
      params: { stateEvent: "disable" },
    });

    expect(updated.inventory.threshold).toBe(90);
    expect(disabled.inventory.state).toBe("Disabled");

    await expectApiError(
      tenant.call("createAlarm", {
        params: {
          name: "bad",
          namespace: "ZStack/VM",
          metricName: "CPUUsedUtilization",
          comparisonOperator: "GreaterThan",
          threshold: 1,
          period: 60,
          labels: [{ key: "HostUuid", op: "Equal", value: "x" }],
        },
      }),
      "SYS.1007",
      /params.labels: unknown label "HostUuid"/,
    );
    await expectApiError(
      tenant.call("createAlarm", {
        params: {
          name: "fast",
          namespace: "ZStack/VM",
          metricName: "CPUUsedUtilization",
          comparisonOperator: "GreaterThan",
          threshold: 1,
          period: 5,
        },
      }),
      "SYS.1007",
      /params.period: 5 seconds is under the collection interval of 10 seconds/,
    );
    await expectApiError(
      tenant.call("createAlarm", {
        params: {
          name: "host",
          namespace: "ZStack/Host",
          metricName: "CPUUsedUtilization",
          comparisonOperator: "GreaterThan",
          threshold: 1,
          period: 60,
        },
      }),
      "ID.1002",
    );

    await tenant.call("deleteAlarm", { path: { uuid: alarm.uuid } });
    expect((await tenant.query("queryAlarm")).inventories).toEqual([]);
  });

  it("ingest rejects unsigned batches", async () => {
    const response = await fetch(
      `${t.server.url}/zstack/asyncrest/monitoring/0123456789abcdef0123456789abcdef`,
      { method: "POST", body: JSON.stringify({ time: Date.now(), samples: [] }) },
    );

    expect(response.status).toBe(401);
  });
});

describe("monitoring a real TCG VM", () => {
  let t: TestServer;
  let admin: TstackClient;
  let tenant: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let vm: Inventory;
  let rootVolumeUuid: string;
  let alarm: Alarm;
  let loadStarted = 0;

  const consoleLog = async () =>
    (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid: vm.uuid } })).console;
  const metric = async (
    namespace: string,
    metricName: string,
    labels: string,
    startTime: number,
    client = admin,
  ) =>
    (
      await client.call<{ data: Point[] }>("getMetricData", {
        query: {
          namespace,
          metricName,
          labels,
          startTime: String(startTime),
          period: String(INTERVAL),
          aggregate: "max",
        },
      })
    ).data;
  const alarmEvents = () =>
    receiver.events.filter(
      (event) => event.path === "/alarm/status/change" && event.content.uuid === alarm.uuid,
    );

  beforeAll(async () => {
    t = await startTestServer("sqlite");
    admin = t.admin;
    await setConfig(admin, "interval", String(INTERVAL));
    await setConfig(admin, "alarm.evaluationInterval", "1");
    receiver = await startReceiver();
    await admin.call("createWebHook", {
      params: { name: "alarms", url: receiver.url, type: "CanonicalEvent", opaque: "/alarm/**" },
    });
    tenant = await tenantClient(t, "tmon-viewer");
    cloud = await buildCloud(t, CIDR);

    // The disk write goes to the boot partition, 32 MiB in: the root filesystem is read-only, the
    // guest does not read the boot partition after booting, and the root volume is this VM's own.
    const userdata = [
      "#!/bin/sh",
      // The pause lets boot-time CPU settle, so an alarm firing later is caused by the loop.
      "sleep 15",
      "dd if=/dev/zero of=/dev/vda1 bs=64k count=64 seek=512 conv=fsync 2>/dev/null",
      "echo tmon-disk-written >/dev/console",
      `end=$(( $(cut -d. -f1 /proc/uptime) + ${LOAD_SECONDS} ))`,
      '( while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do :; done; echo tmon-load-done >/dev/console ) </dev/null >/dev/null 2>&1 &',
      "echo tmon-load-started >/dev/console",
      "",
    ].join("\n");
    vm = (
      await admin.call<{ inventory: Inventory }>("createVmInstance", {
        params: {
          name: "watched",
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
        systemTags: [`userdata::${Buffer.from(userdata).toString("base64")}`],
      })
    ).inventory;
    rootVolumeUuid = String(vm.rootVolumeUuid);
    alarm = (
      await admin.call<{ inventory: Alarm }>("createAlarm", {
        params: {
          name: "vm-busy",
          namespace: "ZStack/VM",
          metricName: "CPUUsedUtilization",
          comparisonOperator: "GreaterThan",
          threshold: CPU_THRESHOLD,
          period: INTERVAL,
          repeatCount: 2,
          labels: [{ key: "VMUuid", op: "Equal", value: vm.uuid }],
        },
      })
    ).inventory;
  }, 300_000);

  afterAll(async () => {
    await cloud?.cleanup();
    await receiver?.close();
    await t?.stop();
  });

  it("CPU load shows within two intervals", async () => {
    await until(
      consoleLog,
      (text) => text.includes("tmon-load-started"),
      "guest load start",
      240_000,
    );
    const started = Math.floor(Date.now() / 1000);

    // A bounded wait, not a timing assertion: the sample covering the loop must arrive by then.
    const data = await until(
      () => metric("ZStack/VM", "CPUUsedUtilization", `VMUuid=${vm.uuid}`, started - 60),
      (points) =>
        points.some((point) => point.time >= started - INTERVAL && point.value > CPU_THRESHOLD),
      `VM CPU utilisation above ${CPU_THRESHOLD}%`,
      2 * INTERVAL * 1000,
    );
    loadStarted = started;

    expect(data.every((point) => point.labels.VMUuid === vm.uuid)).toBe(true);
  });

  it("disk writes show in blockstats", async () => {
    const since = Math.floor(Date.now() / 1000) - 600;
    await until(
      consoleLog,
      (text) => text.includes("tmon-disk-written"),
      "guest disk write",
      60_000,
    );

    const points = await until(
      async () =>
        (
          await admin.call<{ data: Point[] }>("getMetricData", {
            query: {
              namespace: "ZStack/Volume",
              metricName: "DiskWriteBytes",
              labels: `VolumeUuid=${rootVolumeUuid}`,
              startTime: String(since),
              period: String(INTERVAL),
              aggregate: "avg",
            },
          })
        ).data,
      // Each point is a bytes-per-second average over one interval, so the sum of value times
      // interval is the bytes written; dd wrote 4 MiB.
      (data) => data.reduce((sum, point) => sum + point.value * INTERVAL, 0) >= 3 * 1024 * 1024,
      "4 MiB of writes in DiskWriteBytes",
      30_000,
    );

    expect(points.every((point) => point.labels.VMUuid === vm.uuid)).toBe(true);
  });

  it("alarm fires and recovers", async () => {
    expect(loadStarted).toBeGreaterThan(0);

    // Only an Alarm after the loop started counts; the end of the boot may have fired one.
    const afterLoad = (event: { createDate?: unknown; content: Record<string, unknown> }) =>
      event.content.newStatus === "Alarm" &&
      Date.parse(String(event.createDate)) >= (loadStarted - INTERVAL) * 1000;
    const fired = await until(
      async () => alarmEvents(),
      (events) => events.some(afterLoad),
      "alarm event at the webhook",
      60_000,
    );
    const firing = fired.find(afterLoad)!;

    expect(firing.content.metricName).toBe("CPUUsedUtilization");
    expect(Number(firing.content.value)).toBeGreaterThan(CPU_THRESHOLD);
    expect(firing.content.labels).toEqual({ VMUuid: vm.uuid });

    await until(consoleLog, (text) => text.includes("tmon-load-done"), "guest load end", 180_000);
    await until(
      async () => alarmEvents(),
      (events) =>
        events.findLastIndex((event) => event.content.newStatus === "OK") >
        events.findIndex(afterLoad),
      "alarm back to OK at the webhook",
      60_000,
    );
    const current = (await admin.query<Alarm>("queryAlarm", [`uuid=${alarm.uuid}`]))
      .inventories[0]!;

    expect(current.status).toBe("OK");

    // The same events are on the event stream, replayed from the start.
    const streamed: string[] = [];
    const signal = AbortSignal.timeout(15_000);

    for await (const event of admin.events({ lastEventId: 0, path: "/alarm/", signal })) {
      const content = event.content as { uuid: string; newStatus: string };

      if (content.uuid === alarm.uuid) {
        streamed.push(content.newStatus);
      }

      if (streamed.includes("Alarm") && streamed.at(-1) === "OK") {
        break;
      }
    }

    expect(streamed).toContain("Alarm");
    expect(streamed.at(-1)).toBe("OK");
  });

  it("host metrics arrive for admins", async () => {
    const since = Math.floor(Date.now() / 1000) - 120;
    const memory = await metric(
      "ZStack/Host",
      "MemoryAvailableBytes",
      `HostUuid=${cloud.hostUuid}`,
      since,
    );

    expect(memory.length).toBeGreaterThan(0);
    expect(memory[0]!.value).toBeGreaterThan(0);

    // The storage was attached after the host connected; the 30 s reconcile sends it to the agent.
    const storage = await until(
      () =>
        metric(
          "ZStack/Host",
          "DiskFreeCapacityInBytes",
          `PrimaryStorageUuid=${cloud.primaryStorageUuid}`,
          since,
        ),
      (points) => points.length > 0,
      "primary storage free space",
      60_000,
    );

    expect(storage[0]!.labels.HostUuid).toBe(cloud.hostUuid);
  });

  it("other accounts see no VM metrics", async () => {
    const since = Math.floor(Date.now() / 1000) - 300;
    const own = await metric("ZStack/VM", "MemoryUsedBytes", `VMUuid=${vm.uuid}`, since);
    const foreign = await metric(
      "ZStack/VM",
      "MemoryUsedBytes",
      `VMUuid=${vm.uuid}`,
      since,
      tenant,
    );

    expect(own.length).toBeGreaterThan(0);
    expect(foreign).toEqual([]);
    expect((await tenant.query("queryAlarm")).inventories).toEqual([]);
  });

  it("agent serves Prometheus text", async () => {
    const host = (await admin.query<Inventory>("queryHost", [`uuid=${cloud.hostUuid}`]))
      .inventories[0]!;
    const port = (
      await admin.query<{ value: string }>("queryGlobalConfig", [
        "category=host",
        "name=agent.port",
      ])
    ).inventories[0]!.value;
    const text = await (await fetch(`http://${host.managementIp}:${port}/metrics`)).text();

    expect(text).toContain(`tstack_vm_cpu_seconds_total{vm_uuid="${vm.uuid}"}`);
    expect(text).toContain(`volume_uuid="${rootVolumeUuid}"`);
  });
});
