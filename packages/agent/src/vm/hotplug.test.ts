import { mkdir, writeFile } from "node:fs/promises";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  countMarker,
  guestImage,
  killVmsUnder,
  newUuid,
  overlay,
  removeDir,
  tempDir,
  waitFor,
} from "../../test/helpers.js";
import { run } from "../exec.js";
import type { QmpClient } from "../qmp/index.js";
import { volumeDir, volumeFile } from "../storage/primary.js";
import { cdromMedium, ejectIso, insertIso } from "./cdrom.js";
import { snapshotDisk } from "./disk-snapshot.js";
import { QemuDriver } from "./driver.js";
import { attachDisk, detachDisk, findDisk, hotplugNames, resizeDisk } from "./hotplug.js";

const MiB = 1024 * 1024;
const logger = pino({ level: process.env.TSTACK_TEST_LOG ?? "silent" });

let dir: string;
let driver: QemuDriver;
const vmUuid = newUuid();

async function dataDisk(name: string, size: number) {
  const path = `${dir}/${name}.qcow2`;
  await run("qemu-img", ["create", "-q", "-f", "qcow2", path, String(size)]);
  return path;
}

const withQmp = <T>(work: (qmp: QmpClient) => Promise<T>) => driver.withQmp(vmUuid, work);

async function nodeNames() {
  const nodes = await withQmp((qmp) =>
    qmp.execute<{ "node-name": string }[]>("query-named-block-nodes"),
  );
  return nodes.map((node) => node["node-name"]);
}

describe("disk hotplug on real QEMU", { timeout: 180_000 }, () => {
  beforeAll(async () => {
    const image = await guestImage();
    dir = await tempDir();
    driver = new QemuDriver({ dataDir: dir, accel: "tcg", logger, onReport: () => undefined });
    const root = await overlay(image, `${dir}/root.qcow2`);
    const cold = await dataDisk("cold", 32 * MiB);
    await driver.start({
      vmUuid,
      memoryMiB: 128,
      cpuNum: 1,
      disks: [{ path: root }, { path: cold }],
      nics: [],
    });

    // ACPI hot unplug needs the guest kernel up; before that the eject request is lost.
    await waitFor(
      "boot marker",
      () => driver.consoleTail(vmUuid, 65536),
      (text) => countMarker(text, "TSTACK-GUEST: boot-ok") === 1,
    );
  }, 180_000);

  afterAll(async () => {
    await driver?.destroy(vmUuid).catch(() => undefined);
    driver?.close();
    await killVmsUnder(dir);
    await removeDir(dir);
  });

  it("attaches, resizes and detaches a disk", async () => {
    const volumeUuid = newUuid();
    const path = await dataDisk("data", 64 * MiB);
    const { nodeName, deviceId } = hotplugNames(volumeUuid);

    await withQmp((qmp) => attachDisk(qmp, { volumeUuid, path, format: "qcow2" }));
    const attached = await withQmp((qmp) => findDisk(qmp, path));
    expect(attached?.inserted?.["node-name"]).toBe(nodeName);
    expect(attached?.qdev).toContain(deviceId);

    // A repeated request finds the disk and adds nothing.
    await withQmp((qmp) => attachDisk(qmp, { volumeUuid, path, format: "qcow2" }));
    expect((await nodeNames()).filter((name) => name === nodeName)).toHaveLength(1);

    await withQmp((qmp) => resizeDisk(qmp, path, 96 * MiB));
    const resized = await withQmp((qmp) => findDisk(qmp, path));
    expect(resized?.inserted?.image?.["virtual-size"]).toBe(96 * MiB);

    expect(await withQmp((qmp) => detachDisk(qmp, path))).toBe(true);
    expect(await withQmp((qmp) => findDisk(qmp, path))).toBeUndefined();
    expect(await nodeNames()).not.toContain(nodeName);
    expect(await withQmp((qmp) => detachDisk(qmp, path))).toBe(false);
  });

  it("attaches a disk with a backing chain", async () => {
    const volumeUuid = newUuid();
    const base = await dataDisk("snapshot-base", 16 * MiB);
    const top = await overlay(base, `${dir}/snapshot-top.qcow2`);

    await withQmp((qmp) => attachDisk(qmp, { volumeUuid, path: top, format: "qcow2" }));
    const files = await withQmp((qmp) =>
      qmp.execute<{ file: string }[]>("query-named-block-nodes"),
    );
    expect(files.map((node) => node.file)).toContain(base);

    expect(await withQmp((qmp) => detachDisk(qmp, top))).toBe(true);
    const after = await withQmp((qmp) =>
      qmp.execute<{ file: string }[]>("query-named-block-nodes"),
    );
    expect(after.map((node) => node.file)).not.toContain(base);
  });

  it("detaches a disk given at start", async () => {
    const path = `${dir}/cold.qcow2`;
    expect((await withQmp((qmp) => findDisk(qmp, path)))?.device).toBe("disk1");

    expect(await withQmp((qmp) => detachDisk(qmp, path))).toBe(true);
    expect(await withQmp((qmp) => findDisk(qmp, path))).toBeUndefined();
    expect((await withQmp((qmp) => findDisk(qmp, `${dir}/root.qcow2`)))?.device).toBe("disk0");
  });

  it("rejects a file that is not qcow2 and leaves no node", async () => {
    const volumeUuid = newUuid();
    const path = `${dir}/garbage.qcow2`;
    await writeFile(path, "not an image");
    const before = await nodeNames();

    await expect(
      withQmp((qmp) => attachDisk(qmp, { volumeUuid, path, format: "qcow2" })),
    ).rejects.toThrow(/qcow2/);
    expect(await nodeNames()).toEqual(before);
    expect(await withQmp((qmp) => findDisk(qmp, path))).toBeUndefined();
  });

  it("rejects a device that cannot be added and removes its node", async () => {
    const volumeUuid = newUuid();
    const path = await dataDisk("twice", 16 * MiB);
    const { deviceId } = hotplugNames(volumeUuid);
    const before = await nodeNames();

    // An existing device ID makes device_add fail after blockdev-add succeeded.
    await withQmp((qmp) =>
      qmp.execute("device_add", { driver: "virtio-serial-pci", id: deviceId }),
    );
    await expect(
      withQmp((qmp) => attachDisk(qmp, { volumeUuid, path, format: "qcow2" })),
    ).rejects.toThrow(/Duplicate|already/i);
    expect(await nodeNames()).toEqual(before);
  });

  it("inserts and ejects an ISO", async () => {
    const iso = `${dir}/seed.iso`;
    await run("qemu-img", ["create", "-q", "-f", "raw", iso, String(MiB)]);
    expect(await withQmp((qmp) => cdromMedium(qmp))).toBeUndefined();

    await withQmp((qmp) => insertIso(qmp, { path: iso, format: "raw" }));
    expect(await withQmp((qmp) => cdromMedium(qmp))).toBe(iso);
    await withQmp((qmp) => insertIso(qmp, { path: iso, format: "raw" }));
    expect(await withQmp((qmp) => cdromMedium(qmp))).toBe(iso);

    await withQmp((qmp) => ejectIso(qmp));
    expect(await withQmp((qmp) => cdromMedium(qmp))).toBeUndefined();
    await withQmp((qmp) => ejectIso(qmp));
  });

  it("snapshots a plugged disk online, then detaches the whole chain", async () => {
    const volume = { type: "Data" as const, accountUuid: newUuid(), volumeUuid: newUuid() };
    const topFileUuid = newUuid();
    const newTopFileUuid = newUuid();
    await mkdir(volumeDir(dir, volume), { recursive: true });
    const top = volumeFile(dir, volume, topFileUuid);
    await run("qemu-img", ["create", "-q", "-f", "qcow2", top, String(32 * MiB)]);
    await withQmp((qmp) =>
      attachDisk(qmp, { volumeUuid: volume.volumeUuid, path: top, format: "qcow2" }),
    );
    const options = { volume, topFileUuid, newTopFileUuid };

    const taken = await withQmp((qmp) => snapshotDisk(qmp, dir, options));
    expect(taken.snapshot.path).toBe(top);
    expect(taken.newTop.path).toBe(volumeFile(dir, volume, newTopFileUuid));
    expect(taken.newTop.backingFile).toBe(top);
    expect(taken.newTop.backingFormat).toBe("qcow2");
    expect(await withQmp((qmp) => findDisk(qmp, top))).toBeUndefined();
    expect((await withQmp((qmp) => findDisk(qmp, taken.newTop.path)))?.inserted).toBeDefined();

    // A retried request finds the new top in place and takes no second snapshot.
    const again = await withQmp((qmp) => snapshotDisk(qmp, dir, options));
    expect(again.newTop.path).toBe(taken.newTop.path);
    expect(again.newTop.backingFile).toBe(top);

    expect(await withQmp((qmp) => detachDisk(qmp, taken.newTop.path))).toBe(true);
    const files = await withQmp((qmp) =>
      qmp.execute<{ file: string }[]>("query-named-block-nodes"),
    );
    expect(files.map((node) => node.file)).not.toContain(taken.newTop.path);
    expect(files.map((node) => node.file)).not.toContain(top);
  });

  it("snapshots a disk of a paused VM", async () => {
    const volume = { type: "Data" as const, accountUuid: newUuid(), volumeUuid: newUuid() };
    const topFileUuid = newUuid();
    await mkdir(volumeDir(dir, volume), { recursive: true });
    const top = volumeFile(dir, volume, topFileUuid);
    await run("qemu-img", ["create", "-q", "-f", "qcow2", top, String(16 * MiB)]);
    await withQmp((qmp) =>
      attachDisk(qmp, { volumeUuid: volume.volumeUuid, path: top, format: "qcow2" }),
    );
    await driver.pause(vmUuid);

    try {
      const options = { volume, topFileUuid, newTopFileUuid: newUuid() };
      const taken = await withQmp((qmp) => snapshotDisk(qmp, dir, options));

      expect(taken.newTop.backingFile).toBe(top);
      expect((await withQmp((qmp) => findDisk(qmp, taken.newTop.path)))?.inserted).toBeDefined();
    } finally {
      await driver.resume(vmUuid);
    }
  });

  it("rejects a snapshot of a file no disk uses", async () => {
    const volume = { type: "Data" as const, accountUuid: newUuid(), volumeUuid: newUuid() };
    const options = { volume, topFileUuid: newUuid(), newTopFileUuid: newUuid() };

    await expect(withQmp((qmp) => snapshotDisk(qmp, dir, options))).rejects.toThrow(
      /no disk of the VM uses/,
    );
  });
});
