import { stat, writeFile } from "node:fs/promises";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  countMarker,
  createBridge,
  guestImage,
  interfaceExists,
  newUuid,
  overlay,
  removeDir,
  shortId,
  tempDir,
  waitFor,
} from "../../test/helpers.js";
import { QmpClient } from "../qmp/index.js";
import { adoptVms } from "./adopt.js";
import { QemuDriver } from "./driver.js";
import { isAlive, waitForExit } from "./process.js";
import { deleteTap } from "./tap.js";
import type { VmReport, VmSpec } from "./types.js";

const BOOT_OK = "TSTACK-GUEST: boot-ok";
const logger = pino({ level: process.env.TSTACK_TEST_LOG ?? "silent" });

let dir: string;
let image: string;
let deleteBridge: () => Promise<void>;
const bridge = `tqab${shortId()}`;
const tap = `tqat${shortId()}`;
const reports: VmReport[] = [];
const drivers: QemuDriver[] = [];
const vmUuid = newUuid();

function newDriver() {
  const driver = new QemuDriver({
    dataDir: dir,
    accel: "tcg",
    logger,
    onReport: (report) => reports.push(report),
  });
  drivers.push(driver);
  return driver;
}

function spec(disk: string): VmSpec {
  return {
    vmUuid,
    memoryMiB: 128,
    cpuNum: 1,
    disks: [{ path: disk }],
    nics: [{ mac: "52:54:00:7a:00:01", bridgeName: bridge, tapName: tap }],
    vncPassword: "secret",
  };
}

function bootCount(driver: QemuDriver) {
  return driver.consoleTail(vmUuid, 65536).then((text) => countMarker(text, BOOT_OK));
}

beforeAll(async () => {
  image = await guestImage();
  dir = await tempDir();
  deleteBridge = await createBridge(bridge);
});

afterAll(async () => {
  for (const driver of drivers) {
    await driver.destroy(vmUuid).catch(() => undefined);
    driver.close();
  }

  await deleteBridge?.();
  await removeDir(dir);
});

describe("QemuDriver with real QEMU", { timeout: 120_000 }, () => {
  let driver: QemuDriver;
  let disk: string;

  // Every test uses the same VM uuid and tap, and some build on the VM the one before left
  // running. A failed test cleans up instead, so its failure does not cascade to the others.
  afterEach(async ({ task }) => {
    if (task.result?.state !== "fail") {
      return;
    }

    for (const candidate of drivers) {
      await candidate.destroy(vmUuid).catch(() => undefined);
    }

    await deleteTap(tap).catch(() => undefined);
  });

  beforeAll(async () => {
    driver = newDriver();
    disk = await overlay(image, `${dir}/root.qcow2`);
  });

  it("starts a VM that boots", async () => {
    const info = await driver.start(spec(disk));

    expect(info.state).toBe("Running");
    expect(info.vncPort).toBeGreaterThanOrEqual(5900);
    expect(await interfaceExists(tap)).toBe(true);
    await waitFor(
      "boot marker",
      () => bootCount(driver),
      (count) => count === 1,
    );
  });

  it("starts an already running VM as a no-op", async () => {
    const before = driver.get(vmUuid)!;
    const info = await driver.start(spec(disk));

    expect(info.pid).toBe(before.pid);
  });

  it("pauses and resumes", async () => {
    expect((await driver.pause(vmUuid)).state).toBe("Paused");
    expect((await driver.refreshStates())[0]?.state).toBe("Paused");
    expect((await driver.resume(vmUuid)).state).toBe("Running");
    expect((await driver.refreshStates())[0]?.state).toBe("Running");
  });

  it("reboots", async () => {
    await driver.reboot(vmUuid);

    await waitFor(
      "second boot marker",
      () => bootCount(driver),
      (count) => count === 2,
    );
  });

  it("stops with the ACPI power button", async () => {
    const pid = driver.get(vmUuid)!.pid!;
    const info = await driver.stop(vmUuid, { timeoutMs: 30_000 });

    expect(info.state).toBe("Stopped");
    expect(isAlive(pid)).toBe(false);
    expect(await interfaceExists(tap)).toBe(false);
    expect(await driver.consoleTail(vmUuid, 4096)).toContain("TSTACK-GUEST: power-button");
    expect(reports).toEqual([]);
  });

  it("reports a guest power-off", async () => {
    await driver.start(spec(disk));
    await waitFor(
      "boot marker",
      () => bootCount(driver),
      (count) => count === 1,
    );

    // The guest's acpid may still be starting after the boot marker, so the button is pressed
    // again every 5 s until the guest powers off.
    let pressedAt = 0;

    await waitFor(
      "report",
      async () => {
        if (reports.length === 0 && Date.now() - pressedAt > 5000) {
          pressedAt = Date.now();
          await driver.qmpExecute(vmUuid, "system_powerdown").catch(() => undefined);
        }

        return reports.length;
      },
      (count) => count === 1,
    );
    expect(reports[0]).toMatchObject({ vmUuid, state: "Stopped" });
    expect(driver.get(vmUuid)?.state).toBe("Stopped");
    expect(await interfaceExists(tap)).toBe(false);
  });

  it("reports QEMU killed behind its back", async () => {
    reports.length = 0;
    const { pid } = await driver.start(spec(disk));

    process.kill(pid!, "SIGKILL");

    await waitFor(
      "report",
      async () => reports.length,
      (count) => count === 1,
    );
    expect(reports[0]).toEqual({ vmUuid, state: "Crashed", reason: "QEMU exited unexpectedly" });
    expect(driver.get(vmUuid)?.state).toBe("Crashed");
    expect(await interfaceExists(tap)).toBe(false);
  });

  it("reports a guest kernel panic", async () => {
    reports.length = 0;
    await driver.start(spec(disk));
    await waitFor(
      "boot marker",
      () => bootCount(driver),
      (count) => count === 1,
    );

    // The test guest panics on an NMI and signals it through pvpanic.
    await driver.qmpExecute(vmUuid, "inject-nmi");

    await waitFor(
      "report",
      async () => reports.length,
      (count) => count === 1,
    );
    expect(reports[0]).toEqual({ vmUuid, state: "Crashed", reason: "guest kernel panicked" });
    expect(driver.get(vmUuid)?.pid).toBeUndefined();
  });

  it("reports QEMU that died while no driver watched", async () => {
    reports.length = 0;
    const { pid } = await driver.start(spec(disk));
    driver.close();
    process.kill(pid!, "SIGKILL");
    await waitForExit(pid!, 5000);

    const next = newDriver();
    const vms = await adoptVms(next, dir, logger, (report) => reports.push(report));

    expect(vms).toEqual([{ vmUuid, state: "Crashed" }]);
    expect(reports).toEqual([
      { vmUuid, state: "Crashed", reason: "QEMU exited while the agent was not running" },
    ]);
    expect(await interfaceExists(tap)).toBe(false);
    driver = next;
  });

  it("reports a guest power-off while no driver watched", async () => {
    reports.length = 0;
    const { pid } = await driver.start(spec(disk));
    await waitFor(
      "boot marker",
      () => bootCount(driver),
      (count) => count === 1,
    );
    driver.close();

    const qmp = await QmpClient.connect(`${dir}/vms/${vmUuid}/qmp.sock`);
    const shutdown = new Promise((resolve) =>
      qmp.on("event", (e) => e.event === "SHUTDOWN" && resolve(e)),
    );
    await qmp.execute("system_powerdown");
    await shutdown;
    qmp.close();

    const next = newDriver();
    await adoptVms(next, dir, logger, (report) => reports.push(report));

    await waitFor(
      "report",
      async () => reports.length,
      (count) => count === 1,
    );
    expect(reports[0]).toEqual({
      vmUuid,
      state: "Stopped",
      reason: "VM ended while the agent was not running",
    });
    expect(await waitForExit(pid!, 10_000)).toBe(true);
    driver = next;
  });

  it("re-adopts a running VM in a new driver", async () => {
    reports.length = 0;
    const { pid } = await driver.start(spec(disk));
    driver.close();

    const next = newDriver();
    const vms = await adoptVms(next, dir, logger, (report) => reports.push(report));

    expect(vms).toEqual([expect.objectContaining({ vmUuid, state: "Running", pid })]);
    expect(isAlive(pid!)).toBe(true);
    expect((await next.pause(vmUuid)).state).toBe("Paused");
    expect((await next.stop(vmUuid, { timeoutMs: 1000 })).state).toBe("Stopped");
    expect(reports).toEqual([]);
  });

  it("destroys a VM but keeps its disk", async () => {
    const next = drivers.at(-1)!;
    await next.start(spec(disk));

    await next.destroy(vmUuid);

    expect(next.get(vmUuid)).toBeUndefined();
    expect(await interfaceExists(tap)).toBe(false);
    await expect(next.consoleTail(vmUuid, 10)).rejects.toThrow(/no console log/);
    expect((await stat(disk)).isFile()).toBe(true);
    await expect(stat(`${dir}/vms/${vmUuid}`)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("fails a start with QEMU's stderr and leaves nothing behind", async () => {
    const next = drivers.at(-1)!;
    const notQcow2 = `${dir}/not-qcow2.img`;
    await writeFile(notQcow2, "not an image");

    const failure = next.start({ ...spec(disk), disks: [{ path: notQcow2 }] });

    await expect(failure).rejects.toThrow(/QEMU exited with code 1: .*not-qcow2\.img/);
    expect(next.get(vmUuid)).toBeUndefined();
    expect(await interfaceExists(tap)).toBe(false);
    await expect(stat(`${dir}/vms/${vmUuid}`)).rejects.toMatchObject({ code: "ENOENT" });
  });
});
