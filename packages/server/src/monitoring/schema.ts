import type { Generated } from "kysely";

/** One time series: a metric of one resource with one set of labels. */
export interface MetricSeriesTable {
  id: Generated<number>;
  namespace: string;
  metricName: string;
  /** UUID of the host, VM or volume the series describes; account scoping filters on it. */
  resourceUuid: string;
  /** Labels as JSON with sorted keys, so equal label sets compare equal as text. */
  labels: string;
}

/** One raw sample, kept for the raw retention (1 hour by default). */
export interface MetricPointTable {
  seriesId: number;
  /** Milliseconds since the epoch. */
  time: number;
  value: number;
}

/** Samples of one series rolled up over one step, kept until the retention ends. */
export interface MetricRollupTable {
  seriesId: number;
  /** Start of the step, milliseconds since the epoch. */
  time: number;
  sampleCount: number;
  total: number;
  minValue: number;
  maxValue: number;
}

/** A zwatch alarm on one metric. */
export interface AlarmTable {
  uuid: string;
  name: string;
  description: string | null;
  accountUuid: string;
  createDate: string;
  lastOpDate: string;
  version: number;
  namespace: string;
  metricName: string;
  comparisonOperator: string;
  threshold: number;
  /** Seconds each evaluated window spans. */
  period: number;
  /** Consecutive windows that must breach the threshold before the alarm fires. */
  repeatCount: number;
  /** Label filters as a JSON array of `{key, op, value}`. */
  labels: string;
  /** Enabled or Disabled. */
  state: string;
  /** OK, Alarm or InsufficientData. */
  status: string;
  /** When the status last changed; null until the first evaluation with a result. */
  lastStatusChangeDate: string | null;
}

/** Tables of host and VM metrics and their alarms. */
export interface MonitoringTables {
  metricSeries: MetricSeriesTable;
  metricPoints: MetricPointTable;
  metricRollups: MetricRollupTable;
  zwatchAlarms: AlarmTable;
}
