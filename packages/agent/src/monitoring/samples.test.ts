import { describe, expect, it } from "vitest";
import { renderPrometheus } from "./prometheus.js";
import { toSamples } from "./samples.js";
import type { Snapshot } from "./snapshot.js";

const hostUuid = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const vmUuid = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const volumeUuid = "cccccccccccccccccccccccccccccccc";

function snapshot(seconds: number, scale: number): Snapshot {
  return {
    time: seconds * 1000,
    cpu: { busy: 100 * scale, total: 400 * scale },
    load: [0.5, 0.25, 0.125],
    memory: { totalBytes: 1000, availableBytes: 400 },
    storages: [{ uuid: "dddddddddddddddddddddddddddddddd", totalBytes: 500, availableBytes: 200 }],
    interfaces: new Map([
      ["eth0", { rxBytes: 1000 * scale, rxPackets: 10 * scale, txBytes: 0, txPackets: 0 }],
    ]),
    vms: [
      {
        vmUuid,
        pid: 4242,
        cpuNum: 2,
        cpuSeconds: 5 * scale,
        residentBytes: 2048,
        volumes: [
          {
            volumeUuid,
            device: "disk0",
            readBytes: 0,
            writeBytes: 4096 * scale,
            readOps: 0,
            writeOps: 2 * scale,
          },
        ],
        nics: [
          {
            tapName: "vnicbbbbbbbb.0",
            counters: { rxBytes: 300 * scale, rxPackets: 3 * scale, txBytes: 0, txPackets: 0 },
          },
        ],
      },
    ],
  };
}

function value(samples: ReturnType<typeof toSamples>, namespace: string, metricName: string) {
  return samples.find(
    (sample) => sample.namespace === namespace && sample.metricName === metricName,
  )?.value;
}

describe("samples from snapshots", () => {
  it("first snapshot has gauges only", () => {
    const samples = toSamples(hostUuid, undefined, snapshot(10, 1));

    expect(value(samples, "ZStack/Host", "MemoryUsedBytes")).toBe(600);
    expect(value(samples, "ZStack/Host", "CPUUsedUtilization")).toBeUndefined();
    expect(value(samples, "ZStack/VM", "CPUUsedUtilization")).toBeUndefined();
    expect(value(samples, "ZStack/Volume", "DiskWriteBytes")).toBeUndefined();
  });

  it("second snapshot has rates", () => {
    const samples = toSamples(hostUuid, snapshot(10, 1), snapshot(20, 2));

    expect(value(samples, "ZStack/Host", "CPUUsedUtilization")).toBe(25);
    expect(value(samples, "ZStack/Host", "NetworkInBytes")).toBe(100);
    // 5 CPU seconds over 10 s on 2 vCPUs.
    expect(value(samples, "ZStack/VM", "CPUUsedUtilization")).toBe(25);
    expect(value(samples, "ZStack/Volume", "DiskWriteBytes")).toBe(409.6);
    expect(value(samples, "ZStack/Volume", "DiskWriteOps")).toBe(0.2);
    // The tap received what the guest sent.
    expect(value(samples, "ZStack/VM", "NetworkOutBytes")).toBe(30);
    expect(value(samples, "ZStack/VM", "NetworkInBytes")).toBe(0);
  });

  it("labels name the resources", () => {
    const samples = toSamples(hostUuid, snapshot(10, 1), snapshot(20, 2));
    const volume = samples.find((sample) => sample.namespace === "ZStack/Volume");
    const storage = samples.find((sample) => sample.metricName === "DiskFreeCapacityInBytes");

    expect(volume?.labels).toEqual({ VolumeUuid: volumeUuid, VMUuid: vmUuid });
    expect(storage?.labels.PrimaryStorageUuid).toBe("dddddddddddddddddddddddddddddddd");
    expect(storage?.labels.HostUuid).toBe(hostUuid);
  });

  it("restarted VM has no rate", () => {
    const restarted = snapshot(20, 2);
    restarted.vms[0]!.pid = 5000;
    const samples = toSamples(hostUuid, snapshot(10, 1), restarted);

    expect(value(samples, "ZStack/VM", "CPUUsedUtilization")).toBeUndefined();
    expect(value(samples, "ZStack/VM", "MemoryUsedBytes")).toBe(2048);
  });
});

describe("prometheus text", () => {
  it("renders counters with labels", () => {
    const text = renderPrometheus(hostUuid, snapshot(10, 1));

    expect(text).toContain("# TYPE tstack_vm_cpu_seconds_total counter\n");
    expect(text).toContain(`tstack_vm_cpu_seconds_total{vm_uuid="${vmUuid}"} 5\n`);
    expect(text).toContain(
      `tstack_volume_written_bytes_total{vm_uuid="${vmUuid}",volume_uuid="${volumeUuid}"} 4096\n`,
    );
    expect(text).toContain(
      `tstack_host_network_receive_bytes_total{host_uuid="${hostUuid}",interface="eth0"} 1000\n`,
    );
    expect(text).toContain(`tstack_host_memory_available_bytes{host_uuid="${hostUuid}"} 400\n`);
  });

  it("every sample line follows the format", () => {
    const lines = renderPrometheus(hostUuid, snapshot(10, 1)).trimEnd().split("\n");

    for (const line of lines) {
      expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{(\w+="[^"]*",?)+\})? [-+\d.eInfa]+)$/);
    }
  });

  it("escapes label values", () => {
    const odd = snapshot(10, 1);
    odd.interfaces = new Map([['a"b\\c', { rxBytes: 1, rxPackets: 1, txBytes: 1, txPackets: 1 }]]);

    expect(renderPrometheus(hostUuid, odd)).toContain('interface="a\\"b\\\\c"');
  });
});
