import type { InterfaceCounters } from "./procfs.js";
import type { Snapshot, VmReading } from "./snapshot.js";
import type { MetricNamespace, MetricSample } from "./types.js";

/**
 * Turns a snapshot into zwatch samples. Utilisations and per-second rates need the previous
 * snapshot, so the first collection after a start yields only gauges. A counter that went down
 * (a restarted VM, a re-created tap) yields no rate for that interval.
 */
export function toSamples(
  hostUuid: string,
  previous: Snapshot | undefined,
  current: Snapshot,
): MetricSample[] {
  const samples: MetricSample[] = [];
  const seconds = previous ? (current.time - previous.time) / 1000 : 0;
  const add = sampleAdder(samples);
  const host = { HostUuid: hostUuid };

  if (previous) {
    const total = current.cpu.total - previous.cpu.total;
    const busy = current.cpu.busy - previous.cpu.busy;
    add("ZStack/Host", "CPUUsedUtilization", host, total > 0 ? (busy / total) * 100 : undefined);
  }

  add("ZStack/Host", "LoadAverage1Min", host, current.load[0]);
  add("ZStack/Host", "LoadAverage5Min", host, current.load[1]);
  add("ZStack/Host", "LoadAverage15Min", host, current.load[2]);
  add(
    "ZStack/Host",
    "MemoryUsedBytes",
    host,
    current.memory.totalBytes - current.memory.availableBytes,
  );
  add("ZStack/Host", "MemoryAvailableBytes", host, current.memory.availableBytes);

  for (const storage of current.storages) {
    const labels = { ...host, PrimaryStorageUuid: storage.uuid };
    add("ZStack/Host", "DiskTotalCapacityInBytes", labels, storage.totalBytes);
    add("ZStack/Host", "DiskFreeCapacityInBytes", labels, storage.availableBytes);
  }

  for (const [name, counters] of current.interfaces) {
    const before = previous?.interfaces.get(name);
    const labels = { ...host, InterfaceName: name };

    for (const [metricName, value] of networkRates(before, counters, seconds, false)) {
      add("ZStack/Host", metricName, labels, value);
    }
  }

  const earlierVms = new Map(previous?.vms.map((vm) => [vm.vmUuid, vm]));

  for (const vm of current.vms) {
    samples.push(...vmSamples(vm, earlierVms.get(vm.vmUuid), seconds));
  }

  return samples;
}

function vmSamples(vm: VmReading, before: VmReading | undefined, seconds: number) {
  const samples: MetricSample[] = [];
  const labels = { VMUuid: vm.vmUuid };
  // Readings of an earlier QEMU process of the same VM are not comparable.
  const comparable = before && before.pid === vm.pid && seconds > 0 ? before : undefined;
  const add = sampleAdder(samples);

  add("ZStack/VM", "CPUTimeSeconds", labels, vm.cpuSeconds);
  add("ZStack/VM", "MemoryUsedBytes", labels, vm.residentBytes);

  if (comparable) {
    const used = (vm.cpuSeconds - comparable.cpuSeconds) / seconds / vm.cpuNum;
    add("ZStack/VM", "CPUUsedUtilization", labels, Math.min(used * 100, 100));
  }

  for (const nic of vm.nics) {
    const earlier = comparable?.nics.find((candidate) => candidate.tapName === nic.tapName);
    const nicLabels = { ...labels, InterfaceName: nic.tapName };

    for (const [metricName, value] of networkRates(
      earlier?.counters,
      nic.counters,
      seconds,
      true,
    )) {
      add("ZStack/VM", metricName, nicLabels, value);
    }
  }

  for (const volume of vm.volumes) {
    const earlier = comparable?.volumes.find((candidate) => candidate.device === volume.device);

    if (!earlier) {
      continue;
    }

    const volumeLabels = { VolumeUuid: volume.volumeUuid, VMUuid: vm.vmUuid };
    add(
      "ZStack/Volume",
      "DiskReadBytes",
      volumeLabels,
      (volume.readBytes - earlier.readBytes) / seconds,
    );
    add(
      "ZStack/Volume",
      "DiskWriteBytes",
      volumeLabels,
      (volume.writeBytes - earlier.writeBytes) / seconds,
    );
    add("ZStack/Volume", "DiskReadOps", volumeLabels, (volume.readOps - earlier.readOps) / seconds);
    add(
      "ZStack/Volume",
      "DiskWriteOps",
      volumeLabels,
      (volume.writeOps - earlier.writeOps) / seconds,
    );
  }

  return samples;
}

/**
 * Returns per-second network rates. A tap's receive side is what the guest sent, so for a VM NIC
 * (`guestSide`) the directions swap and NetworkOutBytes counts what the guest transmitted.
 */
function networkRates(
  before: InterfaceCounters | undefined,
  after: InterfaceCounters,
  seconds: number,
  guestSide: boolean,
): [string, number | undefined][] {
  if (!before || seconds <= 0) {
    return [];
  }

  const rate = (a: number, b: number) => (b >= a ? (b - a) / seconds : undefined);
  const received = [rate(before.rxBytes, after.rxBytes), rate(before.rxPackets, after.rxPackets)];
  const sent = [rate(before.txBytes, after.txBytes), rate(before.txPackets, after.txPackets)];
  const [inbound, outbound] = guestSide ? [sent, received] : [received, sent];

  return [
    ["NetworkInBytes", inbound[0]],
    ["NetworkInPackets", inbound[1]],
    ["NetworkOutBytes", outbound[0]],
    ["NetworkOutPackets", outbound[1]],
  ];
}

/** Returns a function that appends a sample unless its value is missing, infinite or negative. */
function sampleAdder(samples: MetricSample[]) {
  return (
    namespace: MetricNamespace,
    metricName: string,
    labels: Record<string, string>,
    value: number | undefined,
  ) => {
    if (value !== undefined && Number.isFinite(value) && value >= 0) {
      samples.push({ namespace, metricName, labels, value });
    }
  };
}
