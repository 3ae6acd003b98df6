import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addLocalHost, startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

describe("image cache garbage collection", () => {
  let t: TestServer;
  let admin: TstackClient;
  let host: Awaited<ReturnType<typeof addLocalHost>>;
  let work: string;
  let primaryRoot: string;
  let primaryStorageUuid: string;
  let usedImage: string;
  let unusedImage: string;

  const cacheDir = (imageUuid: string) => join(primaryRoot, "imagecache", "template", imageUuid);

  async function setGracePeriod(seconds: number) {
    await admin.call("updateGlobalConfig", {
      path: { category: "primaryStorage", name: "imageCache.garbageCollector.gracePeriod" },
      params: { value: String(seconds) },
    });
  }

  async function cacheRows() {
    const { inventories } = await admin.query<Inventory & { imageUuid: string }>("queryImageCache");
    return inventories.map((row) => row.imageUuid);
  }

  async function cleanUp() {
    await admin.call("cleanUpImageCacheOnPrimaryStorage", {
      path: { uuid: primaryStorageUuid },
      params: {},
    });
  }

  async function createStoppedVm(name: string, imageUuid: string) {
    const reply = await admin.call<{ inventory: Inventory }>("createVmInstance", {
      params: { name, imageUuid, strategy: "CreateStopped", cpuNum: 1, memorySize: 128 * 2 ** 20 },
    });
    return reply.inventory.uuid;
  }

  async function addImage(name: string, backupStorageUuid: string, url: string) {
    const reply = await admin.call<{ inventory: Inventory }>("addImage", {
      params: { name, url, format: "qcow2", backupStorageUuids: [backupStorageUuid] },
    });
    return reply.inventory.uuid;
  }

  beforeAll(async () => {
    t = await startTestServer("sqlite");
    admin = t.admin;
    host = await addLocalHost(t);
    work = mkdtempSync(join(tmpdir(), "tstack-cache-gc-"));
    const sourceDir = join(work, "source");
    mkdirSync(sourceDir);
    const image = join(sourceDir, "image.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", image, "1M"]);
    writeFileSync(
      join(host.agentDir, "storage-policy.json"),
      JSON.stringify({ allowedFilePrefixes: [sourceDir], allowLoopback: true }),
    );
    await admin.call("updateGlobalConfig", {
      path: { category: "image", name: "allowedFileUrlPrefixes" },
      params: { value: sourceDir },
    });

    const bs = (
      await admin.call<{ inventory: Inventory }>("addImageStoreBackupStorage", {
        params: { name: "store", url: join(work, "store"), hostname: "127.0.0.1" },
      })
    ).inventory;
    await admin.call("attachBackupStorageToZone", {
      path: { zoneUuid: host.zoneUuid, backupStorageUuid: bs.uuid },
    });
    primaryRoot = join(work, "primary");
    primaryStorageUuid = (
      await admin.call<{ inventory: Inventory }>("addLocalPrimaryStorage", {
        params: { name: "local", url: primaryRoot, zoneUuid: host.zoneUuid },
      })
    ).inventory.uuid;
    await admin.call("attachPrimaryStorageToCluster", {
      path: { clusterUuid: host.clusterUuid, primaryStorageUuid },
    });

    usedImage = await addImage("used", bs.uuid, `file://${image}`);
    unusedImage = await addImage("unused", bs.uuid, `file://${image}`);
  }, 300_000);

  afterAll(async () => {
    await t?.stop();
    await host?.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it("removes an expunged VM's entry after the grace period", async () => {
    await createStoppedVm("keeps-image", usedImage);
    const expunged = await createStoppedVm("goes-away", unusedImage);

    expect(existsSync(cacheDir(usedImage))).toBe(true);
    expect(existsSync(cacheDir(unusedImage))).toBe(true);

    await admin.call("destroyVmInstance", { path: { uuid: expunged } });
    await admin.call("expungeVmInstance", { path: { uuid: expunged }, params: {} });

    // Within the grace period nothing goes, although one entry is unused.
    await setGracePeriod(3600);
    await cleanUp();

    expect(existsSync(cacheDir(unusedImage))).toBe(true);
    expect((await cacheRows()).sort()).toEqual([usedImage, unusedImage].sort());

    // Both entries were last filled before this wait, so a 1 s grace period has passed for both.
    await setGracePeriod(1);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await cleanUp();

    expect(existsSync(cacheDir(unusedImage))).toBe(false);
    expect(existsSync(cacheDir(usedImage))).toBe(true);
    expect(await cacheRows()).toEqual([usedImage]);
  });

  it("fills a collected image again", async () => {
    await createStoppedVm("refill", unusedImage);

    expect(existsSync(cacheDir(unusedImage))).toBe(true);
    expect((await cacheRows()).sort()).toEqual([usedImage, unusedImage].sort());
  });
});
