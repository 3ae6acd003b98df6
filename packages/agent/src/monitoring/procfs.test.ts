import { describe, expect, it } from "vitest";
import { diskIndex, parseBlockStats, volumeUuidOfPath } from "./blockstats.js";
import {
  parseCpuTimes,
  parseLoadAverage,
  parseMeminfo,
  parseNetDev,
  parseProcessCpuTicks,
  parseResidentBytes,
} from "./procfs.js";

const PROC_STAT = `cpu  4705 150 1120 16250 520 0 30 0 200 0
cpu0 2350 75 560 8125 260 0 15 0 100 0
intr 1462898
`;

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     789    0    0    0     0          0         0   123456     789    0    0    0     0       0          0
tmonvnic.0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0
`;

describe("procfs parsers", () => {
  it("cpu line sums busy and total", () => {
    const times = parseCpuTimes(PROC_STAT);

    // user+nice+system+idle+iowait+irq+softirq+steal; guest is already in user.
    expect(times.total).toBe(4705 + 150 + 1120 + 16250 + 520 + 0 + 30 + 0);
    expect(times.busy).toBe(times.total - 16250 - 520);
  });

  it("cpu line missing is rejected", () => {
    expect(() => parseCpuTimes("intr 1\n")).toThrow(/no aggregate cpu line/);
  });

  it("loadavg gives three averages", () => {
    expect(parseLoadAverage("0.52 0.58 0.59 2/1107 12345\n")).toEqual([0.52, 0.58, 0.59]);
  });

  it("meminfo gives bytes", () => {
    const memory = parseMeminfo(
      "MemTotal:        8000 kB\nMemFree: 10 kB\nMemAvailable:    3000 kB\n",
    );

    expect(memory.totalBytes).toBe(8000 * 1024);
    expect(memory.availableBytes).toBe(3000 * 1024);
  });

  it("meminfo without MemAvailable is rejected", () => {
    expect(() => parseMeminfo("MemTotal: 8000 kB\n")).toThrow(/MemAvailable/);
  });

  it("process stat survives a name with spaces", () => {
    const stat =
      "4242 (qemu) x (y)) S 1 4242 4242 0 -1 4194560 500 0 0 0 730 270 0 0 20 0 3 0 100 1000 250";

    expect(parseProcessCpuTicks(stat)).toBe(730 + 270);
  });

  it("resident bytes from VmRSS", () => {
    expect(parseResidentBytes("Name:\tqemu\nVmRSS:\t  20480 kB\n")).toBe(20480 * 1024);
    expect(parseResidentBytes("Name:\tzombie\n")).toBe(0);
  });

  it("net dev counters by interface", () => {
    const counters = parseNetDev(NET_DEV);

    expect([...counters.keys()]).toEqual(["lo", "tmonvnic.0"]);
    expect(counters.get("tmonvnic.0")).toEqual({
      rxBytes: 1000,
      rxPackets: 10,
      txBytes: 2000,
      txPackets: 20,
    });
  });
});

describe("blockstats parser", () => {
  it("reads counters by drive id", () => {
    const reply = [
      {
        device: "disk0",
        qdev: "/machine/peripheral-anon/device[1]/virtio-backend",
        stats: {
          rd_bytes: 4096,
          wr_bytes: 8192,
          rd_operations: 1,
          wr_operations: 2,
          flush_operations: 3,
        },
      },
      { device: "", node_name: "#block123", stats: { rd_bytes: 1 } },
    ];

    expect(parseBlockStats(reply)).toEqual([
      { device: "disk0", readBytes: 4096, writeBytes: 8192, readOps: 1, writeOps: 2 },
    ]);
  });

  it("non-array reply is rejected", () => {
    expect(() => parseBlockStats({})).toThrow(/expected an array/);
  });

  it("drive index and volume uuid", () => {
    const volumeUuid = "0123456789abcdef0123456789abcdef";

    expect(diskIndex("disk3")).toBe(3);
    expect(diskIndex("cdrom0")).toBeUndefined();
    expect(volumeUuidOfPath(`/ps/rootVolumes/acct-x/vol-${volumeUuid}/${volumeUuid}.qcow2`)).toBe(
      volumeUuid,
    );
    expect(volumeUuidOfPath("/tmp/guest.qcow2")).toBeUndefined();
  });
});
