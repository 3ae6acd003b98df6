import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createPostgresDatabase, type Dialect, dialects } from "../../test/harness.js";
import { type Db, openDatabase } from "../db/connect.js";
import type { Caller } from "../identity/sessions.js";
import { decideStatus } from "./evaluator.js";
import { getMetricData, parseMetricQuery } from "./query.js";
import { MetricStore, type StoredSample } from "./store.js";

const vmA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const vmB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const tenant = "cccccccccccccccccccccccccccccccc";
const admin: Caller = { sessionUuid: "s", accountUuid: "admin", userUuid: "u", isAdmin: true };
const normal: Caller = { sessionUuid: "s", accountUuid: tenant, userUuid: "u", isAdmin: false };

// A fixed hour boundary keeps buckets and rollup steps aligned in every run.
const T0 = Date.UTC(2026, 0, 1, 0, 0, 0);

function cpu(vmUuid: string, value: number): StoredSample {
  return {
    namespace: "ZStack/VM",
    metricName: "CPUUsedUtilization",
    resourceUuid: vmUuid,
    labels: { VMUuid: vmUuid },
    value,
  };
}

function query(parameters: Record<string, string>, now = T0 + 3_600_000) {
  return parseMetricQuery(
    { namespace: "ZStack/VM", metricName: "CPUUsedUtilization", ...parameters },
    { intervalSeconds: 10, retentionMs: 24 * 3_600_000, now },
  );
}

describe.each(dialects)("metric store on %s", (dialect: Dialect) => {
  let dir: string;
  let db: Db;
  let store: MetricStore;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "tmon-store-"));
    db = await openDatabase(
      dialect === "postgres" ? await createPostgresDatabase() : join(dir, "test.db"),
    );
    store = new MetricStore(db.kysely, db.dialect);

    // VM B belongs to the tenant; VM A has no owner entry, like an admin resource.
    await db.kysely
      .insertInto("resources")
      .values({
        uuid: vmB,
        resourceType: "VmInstance",
        name: "b",
        accountUuid: tenant,
        createDate: "x",
      })
      .execute();

    // Ten minutes of samples every 10 s: VM A at 10 + i % 6, VM B at 50. The batches go in at
    // once, so the store writes them in one transaction.
    const batches = Array.from({ length: 60 }, (_, i) =>
      store.insert(T0 + i * 10_000, [cpu(vmA, 10 + (i % 6)), cpu(vmB, 50)]),
    );
    await Promise.all(batches);
  });

  afterEach(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("aggregates one series per period", async () => {
    const data = await getMetricData(
      store,
      query({
        labels: `VMUuid=${vmA}`,
        startTime: String(T0 / 1000),
        endTime: String(T0 / 1000 + 600),
        period: "60",
        aggregate: "avg",
      }),
      admin,
    );

    expect(data).toHaveLength(10);
    expect(data[0]!.time).toBe(T0 / 1000);
    expect(data[0]!.value).toBeCloseTo(12.5);
    expect(data[0]!.labels).toEqual({ VMUuid: vmA });
  });

  it("min max and sum", async () => {
    const range = { startTime: String(T0 / 1000), endTime: String(T0 / 1000 + 60), period: "60" };
    const value = async (aggregate: string, groupBy?: string) =>
      (
        await getMetricData(
          store,
          query({ ...range, aggregate, ...(groupBy === undefined ? {} : { groupBy }) }),
          admin,
        )
      ).map((point) => point.value);

    expect(await value("min", "")).toEqual([10]);
    expect(await value("max", "")).toEqual([50]);
    // The sum adds each VM's mean: 12.5 + 50.
    expect(await value("sum", "")).toEqual([62.5]);
    expect(await value("max")).toEqual([15, 50]);
  });

  it("normal accounts see their own series", async () => {
    const data = await getMetricData(
      store,
      query({ period: "600", startTime: String(T0 / 1000) }),
      normal,
    );

    expect(data.map((point) => point.labels.VMUuid)).toEqual([vmB]);
  });

  it("sweep rolls up and keeps answers", async () => {
    const before = await getMetricData(
      store,
      query({ startTime: String(T0 / 1000), period: "300", groupBy: "" }),
      admin,
    );

    // Raw retention ends 7 minutes in, so the first 300 s step is rolled up, the rest stays raw.
    await store.sweep(T0 + 420_000, T0 - 1, 300_000);
    const counts = await store.counts();
    const after = await getMetricData(
      store,
      query({ startTime: String(T0 / 1000), period: "300", groupBy: "" }),
      admin,
    );

    expect(counts.rollups).toBe(2);
    expect(counts.points).toBe(60);
    expect(after).toEqual(before);
  });

  it("sweep deletes data past retention", async () => {
    await store.sweep(T0 + 600_000, T0 + 600_000, 300_000);

    expect(await store.counts()).toEqual({ series: 0, points: 0, rollups: 0 });
  });

  it("repeated batch is ignored", async () => {
    await store.insert(T0, [cpu(vmA, 99)]);
    const first = await getMetricData(
      store,
      query({
        labels: `VMUuid=${vmA}`,
        startTime: String(T0 / 1000),
        endTime: String(T0 / 1000 + 10),
        period: "10",
        aggregate: "max",
      }),
      admin,
    );

    expect(first.map((point) => point.value)).toEqual([10]);
  });
});

describe("metric query validation", () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ namespace: "ZStack/Nope" }, /invalid namespace "ZStack\/Nope"/],
    [{ metricName: "Nope" }, /invalid metricName "Nope"/],
    [{ labels: "Color=red" }, /invalid labels "Color=red": expected a label of this metric/],
    [{ labels: "VMUuid" }, /invalid labels "VMUuid"/],
    [{ startTime: "2000", endTime: "1000" }, /invalid endTime "1000"/],
    [{ period: "5" }, /invalid period "5": .*at least the collection interval, 10/],
    [{ startTime: "0" }, /invalid startTime "0": expected a time within the retention of 24 hours/],
    [{ aggregate: "median" }, /invalid aggregate "median"/],
    [{ groupBy: "Color" }, /invalid groupBy "Color"/],
    [{ endTime: "soon" }, /invalid endTime "soon": expected seconds since the epoch/],
  ];

  it.each(cases)("rejects %o", (parameters, message) => {
    expect(() => query(parameters, T0)).toThrow(message);
  });

  it("defaults to the last hour", () => {
    const parsed = query({}, 7_200_000);

    expect(parsed.startTime).toBe(3_600_000);
    expect(parsed.endTime).toBe(7_200_000);
    expect(parsed.periodSeconds).toBe(60);
    expect(parsed.aggregate).toBe("avg");
  });
});

describe("alarm status", () => {
  const alarm = { comparisonOperator: "GreaterThan", threshold: 20, repeatCount: 2 };
  const labels = new Map([
    [1, { VMUuid: vmA }],
    [2, { VMUuid: vmB }],
  ]);
  const row = (seriesId: number, bucket: number, value: number) => ({
    seriesId,
    bucket,
    sampleCount: 2,
    total: value * 2,
    minValue: value,
    maxValue: value,
  });

  it("fires when every window breaches", () => {
    const result = decideStatus(alarm, labels, [
      row(1, 0, 30),
      row(1, 1, 40),
      row(2, 0, 5),
      row(2, 1, 5),
    ]);

    expect(result.status).toBe("Alarm");
    expect(result.value).toBe(40);
    expect(result.labels).toEqual({ VMUuid: vmA });
  });

  it("stays OK when one window is below", () => {
    expect(decideStatus(alarm, labels, [row(1, 0, 10), row(1, 1, 40)]).status).toBe("OK");
  });

  it("lacks data with a window missing", () => {
    expect(decideStatus(alarm, labels, [row(1, 1, 40)]).status).toBe("InsufficientData");
    expect(decideStatus(alarm, labels, []).status).toBe("InsufficientData");
  });

  it("less-than comparisons", () => {
    const low = { ...alarm, comparisonOperator: "LessThanOrEqualTo", threshold: 5 };

    expect(decideStatus(low, labels, [row(2, 0, 5), row(2, 1, 4)]).status).toBe("Alarm");
  });
});
