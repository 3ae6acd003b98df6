import { ApiError } from "@tstack/api";
import type { Caller } from "../identity/sessions.js";
import { findMetric, METRICS, NAMESPACES, type Namespace, RESOURCE_LABEL } from "./catalog.js";
import type { BucketRow, MetricStore, SeriesRow } from "./store.js";

export const AGGREGATES = ["avg", "min", "max", "sum"] as const;
export type Aggregate = (typeof AGGREGATES)[number];

/** A label filter such as `VMUuid=...` or `InterfaceName!=eth0`. */
export interface LabelFilter {
  key: string;
  op: "=" | "!=";
  value: string;
}

/** A validated GetMetricData request; times in milliseconds since the epoch. */
export interface MetricQuery {
  namespace: Namespace;
  metricName: string;
  labels: LabelFilter[];
  startTime: number;
  endTime: number;
  periodSeconds: number;
  aggregate: Aggregate;
  /** Labels that split the result into series; undefined keeps every label set apart. */
  groupBy?: string[];
}

/** One point of the result; `time` is the start of its period in epoch seconds. */
export interface DataPoint {
  time: number;
  value: number;
  labels: Record<string, string>;
}

/** Limits that depend on global configuration. */
export interface QueryLimits {
  intervalSeconds: number;
  retentionMs: number;
  now: number;
}

const MAX_POINTS = 100_000;
const DEFAULT_RANGE_MS = 3_600_000;

type QueryString = Record<string, string | string[] | undefined>;

/**
 * Validates the query string of GetMetricData. Each error names the parameter, the value and what
 * is accepted, and becomes a 400.
 */
export function parseMetricQuery(query: QueryString, limits: QueryLimits): MetricQuery {
  const single = (name: string) => {
    const value = query[name];
    return Array.isArray(value) ? value[value.length - 1] : value;
  };
  const namespace = single("namespace");

  if (!NAMESPACES.includes(namespace as Namespace)) {
    invalid("namespace", namespace, `one of ${NAMESPACES.join(", ")}`);
  }

  const metricName = single("metricName");
  const definition = findMetric(namespace!, metricName ?? "");

  if (!definition) {
    const names = METRICS.filter((metric) => metric.namespace === namespace).map(
      (metric) => metric.name,
    );
    invalid("metricName", metricName, `a metric of ${namespace}: ${names.join(", ")}`);
  }

  const labels = parseLabels(query.labels, definition.labelNames);
  const endTime = parseTime("endTime", single("endTime"), limits.now);
  const startTime = parseTime("startTime", single("startTime"), endTime - DEFAULT_RANGE_MS);

  if (endTime <= startTime) {
    invalid("endTime", single("endTime"), `a time after startTime ${startTime / 1000}`);
  }

  if (startTime < limits.now - limits.retentionMs) {
    invalid(
      "startTime",
      single("startTime"),
      `a time within the retention of ${limits.retentionMs / 3_600_000} hours (monitoring.retention)`,
    );
  }

  const periodSeconds = parsePeriod(single("period"), limits.intervalSeconds);
  const aggregate = (single("aggregate") ?? "avg") as Aggregate;

  if (!AGGREGATES.includes(aggregate)) {
    invalid("aggregate", aggregate, `one of ${AGGREGATES.join(", ")}`);
  }

  const groupBy = parseGroupBy(single("groupBy"), definition.labelNames);
  const buckets = Math.ceil((endTime - startTime) / (periodSeconds * 1000));

  if (buckets > MAX_POINTS) {
    invalid(
      "period",
      String(periodSeconds),
      `a period giving at most ${MAX_POINTS} points per series`,
    );
  }

  return {
    namespace: namespace as Namespace,
    metricName: definition.name,
    labels,
    startTime,
    endTime,
    periodSeconds,
    aggregate,
    groupBy,
  };
}

function invalid(parameter: string, value: unknown, expected: string): never {
  throw new ApiError(
    "invalidArgument",
    `invalid ${parameter} ${JSON.stringify(value ?? null)}: expected ${expected}`,
  );
}

function parseLabels(value: string | string[] | undefined, labelNames: string[]): LabelFilter[] {
  const texts = value === undefined ? [] : Array.isArray(value) ? value : [value];

  return texts.map((text) => {
    const match = /^([A-Za-z]+)(!?=)(.+)$/.exec(text);

    if (!match) {
      invalid("labels", text, "KEY=VALUE or KEY!=VALUE, such as VMUuid=<uuid>");
    }

    if (!labelNames.includes(match[1]!)) {
      invalid("labels", text, `a label of this metric: ${labelNames.join(", ")}`);
    }

    return { key: match[1]!, op: match[2] as "=" | "!=", value: match[3]! };
  });
}

function parseTime(name: string, value: string | undefined, fallback: number) {
  if (value === undefined) {
    return fallback;
  }

  const seconds = Number(value);

  if (value === "" || !Number.isFinite(seconds) || seconds < 0) {
    invalid(name, value, "seconds since the epoch");
  }

  return Math.round(seconds * 1000);
}

function parsePeriod(value: string | undefined, intervalSeconds: number) {
  const period = value === undefined ? Math.max(60, intervalSeconds) : Number(value);

  if (!Number.isInteger(period) || period < intervalSeconds) {
    invalid(
      "period",
      value,
      `an integer number of seconds of at least the collection interval, ${intervalSeconds} (monitoring.interval)`,
    );
  }

  return period;
}

function parseGroupBy(value: string | undefined, labelNames: string[]) {
  if (value === undefined) {
    return undefined;
  }

  const names = value === "" ? [] : value.split(",");

  for (const name of names) {
    if (!labelNames.includes(name)) {
      invalid("groupBy", value, `a comma-separated list of ${labelNames.join(", ")}, or empty`);
    }
  }

  return names;
}

/**
 * Runs a metric query. Normal accounts see only series of resources they own, and host
 * metrics only as admins.
 */
export async function getMetricData(
  store: MetricStore,
  query: MetricQuery,
  caller: Caller,
): Promise<DataPoint[]> {
  if (!caller.isAdmin && query.namespace === "ZStack/Host") {
    throw new ApiError(
      "permissionDenied",
      `${query.namespace} metrics are visible to admin accounts only; account ${caller.accountUuid} is not an admin`,
    );
  }

  const resourceLabel = RESOURCE_LABEL[query.namespace];
  const exact = query.labels.find((filter) => filter.key === resourceLabel && filter.op === "=");
  const series = (
    await store.findSeries(query.namespace, query.metricName, {
      resourceUuid: exact?.value,
      accountUuid: caller.isAdmin ? undefined : caller.accountUuid,
    })
  ).filter((row) => matchesLabels(row.labels, query.labels));

  if (series.length === 0) {
    return [];
  }

  const periodMs = query.periodSeconds * 1000;
  const rows = await store.buckets(
    series.map((row) => row.id),
    { startTime: query.startTime, endTime: query.endTime, periodMs, origin: 0 },
  );
  return aggregateBuckets(series, rows, query);
}

/** Checks a series' labels against filters; every filter must match. */
export function matchesLabels(labels: Record<string, string>, filters: LabelFilter[]) {
  return filters.every((filter) =>
    filter.op === "=" ? labels[filter.key] === filter.value : labels[filter.key] !== filter.value,
  );
}

/**
 * Merges bucket rows of the series that share the grouped labels, and computes the aggregate of
 * each group and bucket. `avg` weighs each sample equally, also across rolled-up steps, and
 * `sum` adds the mean of each series.
 */
export function aggregateBuckets(
  series: SeriesRow[],
  rows: BucketRow[],
  query: Pick<MetricQuery, "aggregate" | "groupBy" | "periodSeconds">,
): DataPoint[] {
  const labelsById = new Map(series.map((row) => [row.id, groupLabels(row.labels, query.groupBy)]));
  const groups = new Map<
    string,
    { labels: Record<string, string>; bucket: number; rows: BucketRow[] }
  >();

  for (const row of rows) {
    const labels = labelsById.get(row.seriesId);

    if (!labels) {
      continue;
    }

    const key = `${JSON.stringify(labels)} ${row.bucket}`;
    const group = groups.get(key) ?? { labels, bucket: row.bucket, rows: [] };
    group.rows.push(row);
    groups.set(key, group);
  }

  const points = [...groups.values()].map((group) => ({
    time: group.bucket * query.periodSeconds,
    value: aggregateValue(group.rows, query.aggregate),
    labels: group.labels,
  }));

  return points.sort(
    (a, b) => a.time - b.time || JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)),
  );
}

function groupLabels(labels: Record<string, string>, groupBy: string[] | undefined) {
  if (!groupBy) {
    return labels;
  }

  return Object.fromEntries(
    groupBy.filter((name) => name in labels).map((name) => [name, labels[name]!]),
  );
}

// sum adds the mean of each series in the bucket, so the sum over VMs of a utilisation does not
// grow with the number of samples per period.
function aggregateValue(rows: BucketRow[], aggregate: Aggregate) {
  if (aggregate === "min") {
    return Math.min(...rows.map((row) => row.minValue));
  }

  if (aggregate === "max") {
    return Math.max(...rows.map((row) => row.maxValue));
  }

  if (aggregate === "avg") {
    const count = rows.reduce((sum, row) => sum + row.sampleCount, 0);
    return rows.reduce((sum, row) => sum + row.total, 0) / count;
  }

  const bySeries = new Map<number, { count: number; total: number }>();

  for (const row of rows) {
    const entry = bySeries.get(row.seriesId) ?? { count: 0, total: 0 };
    entry.count += row.sampleCount;
    entry.total += row.total;
    bySeries.set(row.seriesId, entry);
  }

  return [...bySeries.values()].reduce((sum, entry) => sum + entry.total / entry.count, 0);
}

/** Lists metrics and their label names, optionally of one namespace. */
export function metricMetadata(namespace: string | undefined) {
  if (namespace !== undefined && !NAMESPACES.includes(namespace as Namespace)) {
    invalid("namespace", namespace, `one of ${NAMESPACES.join(", ")}`);
  }

  return METRICS.filter((metric) => namespace === undefined || metric.namespace === namespace).map(
    (metric) => ({
      namespace: metric.namespace,
      name: metric.name,
      unit: metric.unit,
      labelNames: metric.labelNames,
      description: metric.description,
    }),
  );
}
