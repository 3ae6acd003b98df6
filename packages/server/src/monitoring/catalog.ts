/** Metric namespaces: one for hosts, one for VMs and one for volumes. */
export const NAMESPACES = ["ZStack/Host", "ZStack/VM", "ZStack/Volume"] as const;
export type Namespace = (typeof NAMESPACES)[number];

/** A metric the agents report, with the labels its series carry. */
export interface MetricDefinition {
  namespace: Namespace;
  name: string;
  unit: string;
  labelNames: string[];
  description: string;
}

/** Label naming the resource a series of each namespace describes. */
export const RESOURCE_LABEL: Record<Namespace, string> = {
  "ZStack/Host": "HostUuid",
  "ZStack/VM": "VMUuid",
  "ZStack/Volume": "VolumeUuid",
};

const HOST = ["HostUuid"];
const HOST_INTERFACE = ["HostUuid", "InterfaceName"];
const HOST_STORAGE = ["HostUuid", "PrimaryStorageUuid"];
const VM = ["VMUuid"];
const VM_NIC = ["VMUuid", "InterfaceName"];
const VOLUME = ["VolumeUuid", "VMUuid"];

function metric(
  namespace: Namespace,
  name: string,
  unit: string,
  labelNames: string[],
  description: string,
): MetricDefinition {
  return { namespace, name, unit, labelNames, description };
}

function networkMetrics(namespace: Namespace, labels: string[], side: string) {
  return [
    metric(namespace, "NetworkInBytes", "bytes/s", labels, `Bytes per second ${side} received`),
    metric(
      namespace,
      "NetworkInPackets",
      "packets/s",
      labels,
      `Packets per second ${side} received`,
    ),
    metric(namespace, "NetworkOutBytes", "bytes/s", labels, `Bytes per second ${side} sent`),
    metric(namespace, "NetworkOutPackets", "packets/s", labels, `Packets per second ${side} sent`),
  ];
}

/** Every metric the agents report. */
export const METRICS: MetricDefinition[] = [
  metric("ZStack/Host", "CPUUsedUtilization", "%", HOST, "Busy time of all host CPUs"),
  metric("ZStack/Host", "LoadAverage1Min", "", HOST, "1-minute load average"),
  metric("ZStack/Host", "LoadAverage5Min", "", HOST, "5-minute load average"),
  metric("ZStack/Host", "LoadAverage15Min", "", HOST, "15-minute load average"),
  metric("ZStack/Host", "MemoryUsedBytes", "bytes", HOST, "Host memory not available"),
  metric("ZStack/Host", "MemoryAvailableBytes", "bytes", HOST, "MemAvailable of the host"),
  metric(
    "ZStack/Host",
    "DiskTotalCapacityInBytes",
    "bytes",
    HOST_STORAGE,
    "Size of the filesystem of a primary storage on the host",
  ),
  metric(
    "ZStack/Host",
    "DiskFreeCapacityInBytes",
    "bytes",
    HOST_STORAGE,
    "Bytes still writable on the filesystem of a primary storage on the host",
  ),
  ...networkMetrics("ZStack/Host", HOST_INTERFACE, "the host interface"),
  metric(
    "ZStack/VM",
    "CPUUsedUtilization",
    "%",
    VM,
    "CPU time per vCPU of the QEMU process or the container's cgroup",
  ),
  metric(
    "ZStack/VM",
    "CPUTimeSeconds",
    "s",
    VM,
    "CPU time of the QEMU process or the container's cgroup since it started",
  ),
  metric(
    "ZStack/VM",
    "MemoryUsedBytes",
    "bytes",
    VM,
    "Resident memory of the QEMU process, or the working set of the container's cgroup",
  ),
  ...networkMetrics("ZStack/VM", VM_NIC, "the guest's NIC"),
  metric("ZStack/Volume", "DiskReadBytes", "bytes/s", VOLUME, "Bytes per second the guest read"),
  metric("ZStack/Volume", "DiskWriteBytes", "bytes/s", VOLUME, "Bytes per second the guest wrote"),
  metric("ZStack/Volume", "DiskReadOps", "ops/s", VOLUME, "Read operations per second"),
  metric("ZStack/Volume", "DiskWriteOps", "ops/s", VOLUME, "Write operations per second"),
];

const BY_KEY = new Map(
  METRICS.map((definition) => [`${definition.namespace} ${definition.name}`, definition]),
);

/** Returns the definition of a metric, or undefined when the namespace has no such metric. */
export function findMetric(namespace: string, name: string) {
  return BY_KEY.get(`${namespace} ${name}`);
}
