/** Metric namespaces: one for hosts, one for VMs and one for volumes. */
export type MetricNamespace = "ZStack/Host" | "ZStack/VM" | "ZStack/Volume";

/** One value of one metric series at the time of its batch. */
export interface MetricSample {
  namespace: MetricNamespace;
  metricName: string;
  /** Series labels such as `VMUuid`; values are UUIDs or interface names. */
  labels: Record<string, string>;
  value: number;
}

/**
 * Body POSTed to the monitoring push URL with `commandpath: /monitoring/samples`, once per
 * collection interval.
 */
export interface MetricBatch {
  hostUuid: string;
  /** Collection time, milliseconds since the epoch. */
  time: number;
  intervalSeconds: number;
  samples: MetricSample[];
}

/** A primary storage whose filesystem space the agent reports. */
export interface MonitoredPrimaryStorage {
  uuid: string;
  /** Absolute path of the storage directory or mount point. */
  root: string;
}

/** Body of `/monitoring/config`. */
export interface MonitoringConfig {
  /** Seconds between collections, 1 to 3600. */
  intervalSeconds: number;
  /** Management node URL that receives each batch, or null to only serve `GET /metrics`. */
  pushUrl: string | null;
  primaryStorages: MonitoredPrimaryStorage[];
}
