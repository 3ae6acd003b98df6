import { mkdtemp, readdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createBridge,
  interfaceExists,
  newUuid,
  removeDir,
  shortId,
  waitFor,
} from "../../test/helpers.js";
import { run } from "../exec.js";
import { adoptContainers } from "./adopt.js";
import { ContainerDriver } from "./driver.js";
import { isMountPoint } from "./overlay.js";
import { containerPaths } from "./paths.js";
import { buildBusyboxTarball } from "./testbed.js";
import type { ContainerSpec, VmReport } from "./types.js";

const logger = pino({ level: process.env.TSTACK_TEST_LOG ?? "silent" });
const PREFIX = "tct";
const suffix = shortId();
const bridge = `tctb${suffix}`;
const peerNetns = `tctpeer${suffix}`;
const peerVeth = `tctv${suffix}`;
const subnet = `10.251.${Number.parseInt(suffix.slice(0, 2), 16)}`;
const peerIp = `${subnet}.2`;
const containerIp = `${subnet}.5`;
const imageUuid = newUuid();
const vmUuid = newUuid();
const reports: VmReport[] = [];
const drivers: ContainerDriver[] = [];

let dir: string;
let tarPath: string;
let deleteBridge: () => Promise<void>;

function newDriver() {
  const driver = new ContainerDriver({
    dataDir: join(dir, "data"),
    logger,
    namePrefix: PREFIX,
    watchIntervalMs: 100,
    onReport: (report) => reports.push(report),
  });
  drivers.push(driver);
  return driver;
}

function spec(uuid: string, overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    hypervisorType: "Container",
    vmUuid: uuid,
    memoryMiB: 64,
    cpuNum: 1,
    pidsLimit: 100,
    rootfs: { imageUuid, tarPath },
    nics: [
      {
        mac: "52:54:00:7c:00:05",
        bridgeName: bridge,
        tapName: `tctn${suffix}`,
        ipv4: { address: `${containerIp}/24`, gateway: peerIp },
      },
    ],
    hostname: "tct-box",
    dns: [peerIp],
    ...overrides,
  };
}

function runcIn(driver: ContainerDriver, args: string[]) {
  return run("runc", ["--root", driver.runc.root, ...args], { okExitCodes: [1] });
}

async function pingFromPeer(address: string) {
  const result = await run(
    "ip",
    ["netns", "exec", peerNetns, "ping", "-c", "1", "-W", "2", address],
    { okExitCodes: [1] },
  );
  return result.exitCode === 0;
}

async function hostLeftovers(driver: ContainerDriver, uuid: string) {
  const id = driver.containerId(uuid);
  const paths = containerPaths(join(dir, "data"), uuid);
  return {
    veth: await interfaceExists(`tctn${suffix}`),
    netns: (await stat(`/run/netns/${id}`).catch(() => undefined)) !== undefined,
    mount: await isMountPoint(paths.rootfs),
    runc: (await driver.runc.state(id)) !== undefined,
    cgroup: (await stat(`/sys/fs/cgroup/memory/${id}`).catch(() => undefined)) !== undefined,
  };
}

const NOTHING_LEFT = { veth: false, netns: false, mount: false, runc: false, cgroup: false };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tct-driver-"));
  tarPath = await buildBusyboxTarball(dir);
  deleteBridge = await createBridge(bridge);
  await run("ip", ["netns", "add", peerNetns]);
  await run("ip", [
    "link",
    "add",
    peerVeth,
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    peerNetns,
  ]);
  await run("ip", ["link", "set", peerVeth, "master", bridge, "up"]);
  await run("ip", ["-n", peerNetns, "address", "add", `${peerIp}/24`, "dev", "eth0"]);
  await run("ip", ["-n", peerNetns, "link", "set", "eth0", "up"]);
});

afterAll(async () => {
  for (const driver of drivers) {
    driver.close();
  }

  const cleaner = newDriver();
  await cleaner.destroy(vmUuid).catch(() => undefined);
  cleaner.close();
  await run("ip", ["netns", "delete", peerNetns], { okExitCodes: [1] });
  await run("ip", ["link", "delete", peerVeth], { okExitCodes: [1] });
  await deleteBridge?.();
  await removeDir(dir);
});

describe("container driver on runc", () => {
  it("starts with limits, network and console", async () => {
    const driver = newDriver();
    const info = await driver.start(spec(vmUuid));

    expect(info.state).toBe("Running");
    expect(info.pid).toBeGreaterThan(1);

    const console = await waitFor(
      "boot line on the console",
      () => driver.consoleTail(vmUuid, 4096),
      (text) => text.includes("TCT-BOOT"),
      20_000,
    );
    expect(console).toContain(`mem=${64 * 1024 * 1024}`);
    expect(console).toContain("pids=100");
    expect(console).toContain("host=tct-box");
    expect(await pingFromPeer(containerIp)).toBe(true);

    const ports = await run("ip", ["-o", "link", "show", "master", bridge]);
    expect(ports.stdout).toContain(`tctn${suffix}`);
  });

  it("runs init with dropped capabilities", async () => {
    const driver = drivers[0]!;
    const id = driver.containerId(vmUuid);
    const status = await runcIn(driver, ["exec", id, "cat", "/proc/1/status"]);
    const capEff = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(status.stdout)![1]}`);
    const CAP_NET_ADMIN = 12n;
    const CAP_SYS_ADMIN = 21n;
    const CAP_NET_RAW = 13n;

    expect(capEff & (1n << CAP_SYS_ADMIN)).toBe(0n);
    expect(capEff & (1n << CAP_NET_ADMIN)).toBe(0n);
    expect(capEff & (1n << CAP_NET_RAW)).not.toBe(0n);
    expect(status.stdout).toMatch(/Seccomp:\s*2/);
  });

  it("pings out and reads its resolv.conf", async () => {
    const driver = drivers[0]!;
    const id = driver.containerId(vmUuid);
    const ping = await runcIn(driver, ["exec", id, "ping", "-c", "1", "-W", "2", peerIp]);
    const resolv = await runcIn(driver, ["exec", id, "cat", "/etc/resolv.conf"]);

    expect(ping.exitCode).toBe(0);
    expect(resolv.stdout).toBe(`nameserver ${peerIp}\n`);
  });

  it("pauses and resumes with the freezer", async () => {
    const driver = drivers[0]!;
    const id = driver.containerId(vmUuid);

    expect((await driver.pause(vmUuid)).state).toBe("Paused");
    expect((await driver.runc.state(id))?.status).toBe("paused");
    expect((await driver.resume(vmUuid)).state).toBe("Running");
    expect((await driver.runc.state(id))?.status).toBe("running");
  });

  it("is re-adopted by a new driver", async () => {
    drivers[0]!.close();
    const driver = newDriver();
    const adopted = await adoptContainers(driver, join(dir, "data"), logger, () => undefined);

    expect(adopted).toEqual([expect.objectContaining({ vmUuid, state: "Running" })]);
    expect(await pingFromPeer(containerIp)).toBe(true);
  });

  it("stops with SIGTERM and keeps the upper layer", async () => {
    const driver = drivers[1]!;
    const id = driver.containerId(vmUuid);
    await runcIn(driver, ["exec", id, "touch", "/root/kept"]);

    const stopped = await driver.stop(vmUuid, { timeoutMs: 10_000 });

    expect(stopped.state).toBe("Stopped");
    expect(await driver.consoleTail(vmUuid, 4096)).toContain("TCT-TERM");
    expect(await hostLeftovers(driver, vmUuid)).toEqual(NOTHING_LEFT);

    await driver.start(spec(vmUuid));
    const ls = await runcIn(driver, ["exec", id, "ls", "/root"]);
    expect(ls.stdout).toContain("kept");
  });

  it("reports the death of init", async () => {
    const driver = drivers[1]!;
    const pid = driver.get(vmUuid)!.pid!;
    reports.length = 0;

    process.kill(pid, "SIGKILL");
    await waitFor(
      "a report",
      async () => reports.length,
      (count) => count > 0,
      20_000,
    );

    expect(reports[0]).toEqual(expect.objectContaining({ vmUuid, state: "Stopped" }));
    await waitFor(
      "cleanup after the exit",
      () => hostLeftovers(driver, vmUuid),
      (left) => Object.values(left).every((value) => !value),
      20_000,
    );
    expect(driver.get(vmUuid)?.state).toBe("Stopped");
  });

  it("rolls back a failed start", async () => {
    const driver = drivers[1]!;
    const failing = newUuid();

    await expect(driver.start(spec(failing, { init: ["/sbin/missing-init"] }))).rejects.toThrow(
      /runc run/,
    );
    expect(await hostLeftovers(driver, failing)).toEqual(NOTHING_LEFT);
    expect(await readdir(join(dir, "data", "containers"))).not.toContain(failing);
    expect(driver.get(failing)).toBeUndefined();
  });

  it("stops a paused container", async () => {
    const driver = drivers[1]!;
    await driver.start(spec(vmUuid));
    await driver.pause(vmUuid);

    const stopped = await driver.stop(vmUuid);

    expect(stopped.state).toBe("Stopped");
    expect(await hostLeftovers(driver, vmUuid)).toEqual(NOTHING_LEFT);
  });

  it("destroys the run directory", async () => {
    const driver = drivers[1]!;
    await driver.start(spec(vmUuid));

    await driver.destroy(vmUuid);

    expect(await hostLeftovers(driver, vmUuid)).toEqual(NOTHING_LEFT);
    expect(await readdir(join(dir, "data", "containers"))).toEqual([]);
    expect(driver.get(vmUuid)).toBeUndefined();
  });
});
