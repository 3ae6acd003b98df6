import type { Snapshot } from "./snapshot.js";

type Labels = Record<string, string>;

interface Family {
  name: string;
  type: "counter" | "gauge";
  help: string;
  series: [Labels, number][];
}

/**
 * Renders a snapshot in the Prometheus text exposition format 0.0.4. Counters are the raw kernel
 * and QEMU totals, so a Prometheus server computes rates itself with `rate()`.
 */
export function renderPrometheus(hostUuid: string, snapshot: Snapshot | undefined): string {
  if (!snapshot) {
    return "";
  }

  const families = hostFamilies(hostUuid, snapshot).concat(vmFamilies(snapshot));
  const lines: string[] = [];

  for (const family of families) {
    lines.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.type}`);

    for (const [labels, value] of family.series) {
      lines.push(`${family.name}${formatLabels(labels)} ${formatValue(value)}`);
    }
  }

  return `${lines.join("\n")}\n`;
}

function hostFamilies(hostUuid: string, snapshot: Snapshot): Family[] {
  const host = { host_uuid: hostUuid };
  const interfaces = [...snapshot.interfaces].map(
    ([name, counters]) => [{ ...host, interface: name }, counters] as const,
  );
  const storages = snapshot.storages.map(
    (storage) => [{ ...host, primary_storage_uuid: storage.uuid }, storage] as const,
  );

  return [
    family("tstack_host_cpu_busy_ticks_total", "counter", "Clock ticks all host CPUs spent busy", [
      [host, snapshot.cpu.busy],
    ]),
    family("tstack_host_cpu_ticks_total", "counter", "Clock ticks of all host CPUs", [
      [host, snapshot.cpu.total],
    ]),
    family("tstack_host_load1", "gauge", "1-minute load average", [[host, snapshot.load[0]]]),
    family("tstack_host_load5", "gauge", "5-minute load average", [[host, snapshot.load[1]]]),
    family("tstack_host_load15", "gauge", "15-minute load average", [[host, snapshot.load[2]]]),
    family("tstack_host_memory_total_bytes", "gauge", "Host memory", [
      [host, snapshot.memory.totalBytes],
    ]),
    family("tstack_host_memory_available_bytes", "gauge", "MemAvailable of /proc/meminfo", [
      [host, snapshot.memory.availableBytes],
    ]),
    family(
      "tstack_host_storage_total_bytes",
      "gauge",
      "Size of the filesystem of a primary storage",
      storages.map(([labels, storage]) => [labels, storage.totalBytes]),
    ),
    family(
      "tstack_host_storage_available_bytes",
      "gauge",
      "Bytes still writable on the filesystem of a primary storage",
      storages.map(([labels, storage]) => [labels, storage.availableBytes]),
    ),
    ...counterFamilies("tstack_host_network", "a host interface", interfaces),
  ];
}

function vmFamilies(snapshot: Snapshot): Family[] {
  const vms = snapshot.vms.map((vm) => [{ vm_uuid: vm.vmUuid }, vm] as const);
  const volumes = snapshot.vms.flatMap((vm) =>
    vm.volumes.map(
      (volume) => [{ vm_uuid: vm.vmUuid, volume_uuid: volume.volumeUuid }, volume] as const,
    ),
  );
  const nics = snapshot.vms.flatMap((vm) =>
    vm.nics.map((nic) => [{ vm_uuid: vm.vmUuid, interface: nic.tapName }, nic.counters] as const),
  );

  return [
    family(
      "tstack_vm_cpu_seconds_total",
      "counter",
      "CPU time of the VM's QEMU process or the container's cgroup, user plus system",
      vms.map(([labels, vm]) => [labels, vm.cpuSeconds]),
    ),
    family(
      "tstack_vm_cpus",
      "gauge",
      "vCPUs of the VM",
      vms.map(([labels, vm]) => [labels, vm.cpuNum]),
    ),
    family(
      "tstack_vm_memory_resident_bytes",
      "gauge",
      "Resident memory of the VM's QEMU process, or the working set of the container's cgroup",
      vms.map(([labels, vm]) => [labels, vm.residentBytes]),
    ),
    family(
      "tstack_volume_read_bytes_total",
      "counter",
      "Bytes the guest read from the volume",
      volumes.map(([labels, volume]) => [labels, volume.readBytes]),
    ),
    family(
      "tstack_volume_written_bytes_total",
      "counter",
      "Bytes the guest wrote to the volume",
      volumes.map(([labels, volume]) => [labels, volume.writeBytes]),
    ),
    family(
      "tstack_volume_reads_total",
      "counter",
      "Read operations of the guest on the volume",
      volumes.map(([labels, volume]) => [labels, volume.readOps]),
    ),
    family(
      "tstack_volume_writes_total",
      "counter",
      "Write operations of the guest on the volume",
      volumes.map(([labels, volume]) => [labels, volume.writeOps]),
    ),
    // Tap counters as the host counts them, so receive is what the guest sent.
    ...counterFamilies("tstack_vm_tap", "a VM's tap device, as the host counts it", nics),
  ];
}

function counterFamilies(
  prefix: string,
  what: string,
  series: readonly (readonly [
    Labels,
    { rxBytes: number; rxPackets: number; txBytes: number; txPackets: number },
  ])[],
): Family[] {
  return [
    family(
      `${prefix}_receive_bytes_total`,
      "counter",
      `Bytes received on ${what}`,
      series.map(([labels, counters]) => [labels, counters.rxBytes]),
    ),
    family(
      `${prefix}_receive_packets_total`,
      "counter",
      `Packets received on ${what}`,
      series.map(([labels, counters]) => [labels, counters.rxPackets]),
    ),
    family(
      `${prefix}_transmit_bytes_total`,
      "counter",
      `Bytes transmitted on ${what}`,
      series.map(([labels, counters]) => [labels, counters.txBytes]),
    ),
    family(
      `${prefix}_transmit_packets_total`,
      "counter",
      `Packets transmitted on ${what}`,
      series.map(([labels, counters]) => [labels, counters.txPackets]),
    ),
  ];
}

function family(
  name: string,
  type: Family["type"],
  help: string,
  series: [Labels, number][],
): Family {
  return { name, type, help, series };
}

function formatLabels(labels: Labels) {
  const pairs = Object.entries(labels).map(([key, value]) => `${key}="${escapeLabel(value)}"`);
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

// The exposition format escapes backslash, double quote and line feed in label values.
function escapeLabel(value: string) {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function formatValue(value: number) {
  if (Number.isNaN(value)) {
    return "NaN";
  }

  if (!Number.isFinite(value)) {
    return value > 0 ? "+Inf" : "-Inf";
  }

  return String(value);
}
