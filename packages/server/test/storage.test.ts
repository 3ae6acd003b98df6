import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer, type Server as HttpServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addLocalHost, startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

const MiB = 1024 * 1024;

/**
 * Serves files of `dir` on 127.0.0.1. `/truncated/<name>` sends the first half of the file as if
 * it were whole, and `/dies/<name>` closes the connection halfway through.
 */
async function startFileServer(dir: string) {
  const server = createServer(async (request, response) => {
    const [, mode, name] = /^\/(?:(truncated|dies)\/)?(.*)$/.exec(request.url ?? "") ?? [];

    try {
      const data = await readFile(join(dir, String(name)));
      const half = data.subarray(0, Math.floor(data.length / 2));

      if (mode === "truncated") {
        response.writeHead(200, { "content-length": half.length });
        response.end(half);
        return;
      }

      if (mode === "dies") {
        response.writeHead(200, { "content-length": data.length });
        response.write(half, () => response.socket?.destroy());
        return;
      }

      response.writeHead(200, { "content-length": data.length });
      response.end(data);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${port}` };
}

async function failure(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string; status?: number; details?: string };
  }

  throw new Error("expected the call to fail");
}

describe("storage on a local KVM host", () => {
  let t: TestServer;
  let admin: TstackClient;
  let host: Awaited<ReturnType<typeof addLocalHost>>;
  let work: string;
  let files: { server: HttpServer; url: string };
  let backupStorage: Inventory;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "tss-"));
    t = await startTestServer("sqlite");
    admin = t.admin;
    host = await addLocalHost(t);
    // The agent's own policy, which the management node cannot widen.
    writeFileSync(
      join(host.agentDir, "storage-policy.json"),
      JSON.stringify({ allowLoopback: true, allowedFilePrefixes: [join(work, "allowed")] }),
    );
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", join(work, "small.qcow2"), "64M"]);
    // Data clusters make a cut-off copy detectably corrupt to qemu-img check.
    execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0xab 0 4M", join(work, "small.qcow2")]);
    files = await startFileServer(work);
  }, 120_000);

  afterAll(async () => {
    files?.server.close();
    await host?.cleanup();
    await t?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("adds an image store with capacity", async () => {
    backupStorage = (
      await admin.call<{ inventory: Inventory }>("addImageStoreBackupStorage", {
        params: { name: "store", url: join(work, "store"), hostname: "127.0.0.1" },
      })
    ).inventory;
    expect(backupStorage.status).toBe("Connected");
    expect(backupStorage.state).toBe("Enabled");
    expect(backupStorage.totalCapacity).toBeGreaterThan(0);
    expect(backupStorage.availableCapacity).toBeGreaterThan(0);

    await admin.call("attachBackupStorageToZone", {
      path: { zoneUuid: host.zoneUuid, backupStorageUuid: backupStorage.uuid },
      params: {},
    });
    const [queried] = (
      await admin.call<{ inventories: Inventory[] }>("queryBackupStorage", {
        query: { q: [`uuid=${backupStorage.uuid}`] },
      })
    ).inventories;
    expect(queried?.attachedZoneUuids).toEqual([host.zoneUuid]);
  });

  it("rejects an image store on an unknown host", async () => {
    const error = await failure(
      admin.call("addImageStoreBackupStorage", {
        params: { name: "x", url: join(work, "x"), hostname: "10.255.255.1" },
      }),
    );
    expect(String(error.message)).toMatch(/params.hostname/);
  });

  it("disables, enables and reconnects the image store", async () => {
    const disabled = await admin.call<{ inventory: Inventory }>("changeBackupStorageState", {
      path: { uuid: backupStorage.uuid },
      params: { stateEvent: "disable" },
    });
    expect(disabled.inventory.state).toBe("Disabled");
    await admin.call("changeBackupStorageState", {
      path: { uuid: backupStorage.uuid },
      params: { stateEvent: "enable" },
    });
    const reconnected = await admin.call<{ inventory: Inventory }>("reconnectBackupStorage", {
      path: { uuid: backupStorage.uuid },
      params: {},
    });
    expect(reconnected.inventory.status).toBe("Connected");
  });

  describe("images", () => {
    let image: Inventory;

    beforeAll(async () => {
      await admin.call("updateGlobalConfig", {
        path: { category: "image", name: "allowLoopbackUrls" },
        params: { value: "true" },
      });
    });

    it("adds a qcow2 image by URL with facts from qemu-img", async () => {
      image = (
        await admin.call<{ inventory: Inventory }>("addImage", {
          params: {
            name: "small",
            url: `${files.url}/small.qcow2`,
            mediaType: "RootVolumeTemplate",
            format: "raw",
            platform: "Linux",
            backupStorageUuids: [backupStorage.uuid],
          },
        })
      ).inventory;
      expect(image.status).toBe("Ready");
      expect(image.format).toBe("qcow2");
      expect(image.size).toBe(64 * MiB);
      expect(image.actualSize).toBeGreaterThan(0);
      expect(image.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(image.md5Sum).toMatch(/^[0-9a-f]{32}$/);
      const refs = image.backupStorageRefs as Inventory[];
      expect(refs[0]?.status).toBe("Ready");
    });

    it("rejects a truncated download with the reason", async () => {
      const error = await failure(
        admin.call("addImage", {
          params: {
            name: "truncated",
            url: `${files.url}/truncated/small.qcow2`,
            backupStorageUuids: [backupStorage.uuid],
          },
        }),
      );
      expect(error.message).toMatch(/corrupt/);
      const failed = await admin.query<Inventory>("queryImage", ["name=truncated"]);
      expect(failed.inventories[0]?.status).toBe("Error");
      const leftovers = execFileSync("find", [join(work, "store"), "-name", ".*download*"]);
      expect(leftovers.toString()).toBe("");
    });

    it("fails a download cut off midway and keeps no partial file", async () => {
      const error = await failure(
        admin.call("addImage", {
          params: {
            name: "dies",
            url: `${files.url}/dies/small.qcow2`,
            backupStorageUuids: [backupStorage.uuid],
          },
        }),
      );
      expect(error.message).toMatch(/download of .*dies\/small.qcow2 failed/);
      const leftovers = execFileSync("find", [join(work, "store"), "-name", ".*download*"]);
      expect(leftovers.toString()).toBe("");
    });

    it("rejects a bad URL scheme", async () => {
      const error = await failure(
        admin.call("addImage", {
          params: {
            name: "ftp",
            url: "ftp://example.com/a.qcow2",
            backupStorageUuids: [backupStorage.uuid],
          },
        }),
      );
      expect(error.message).toMatch(/scheme 'ftp' is not supported/);
    });

    it("rejects a file URL outside the allowed prefix", async () => {
      const error = await failure(
        admin.call("addImage", {
          params: {
            name: "file",
            url: `file://${join(work, "small.qcow2")}`,
            backupStorageUuids: [backupStorage.uuid],
          },
        }),
      );
      expect(error.message).toMatch(/image.allowedFileUrlPrefixes/);
    });

    it("rejects loopback URLs unless the global config allows them", async () => {
      await admin.call("updateGlobalConfig", {
        path: { category: "image", name: "allowLoopbackUrls" },
        params: { value: "false" },
      });
      const error = await failure(
        admin.call("addImage", {
          params: {
            name: "lo",
            url: `${files.url}/small.qcow2`,
            backupStorageUuids: [backupStorage.uuid],
          },
        }),
      );
      await admin.call("updateGlobalConfig", {
        path: { category: "image", name: "allowLoopbackUrls" },
        params: { value: "true" },
      });
      expect(error.message).toMatch(/loopback/);
    });

    it("deletes, recovers and expunges an image", async () => {
      const extra = (
        await admin.call<{ inventory: Inventory }>("addImage", {
          params: {
            name: "extra",
            url: `${files.url}/small.qcow2`,
            backupStorageUuids: [backupStorage.uuid],
          },
        })
      ).inventory;
      const file = join(work, "store", "images", extra.uuid, `${extra.uuid}.qcow2`);
      execFileSync("test", ["-f", file]);

      await admin.call("deleteImage", { path: { uuid: extra.uuid } });
      let [row] = (await admin.query<Inventory>("queryImage", [`uuid=${extra.uuid}`])).inventories;
      expect(row?.status).toBe("Deleted");

      await admin.call("recoverImage", { path: { uuid: extra.uuid }, params: {} });
      [row] = (await admin.query<Inventory>("queryImage", [`uuid=${extra.uuid}`])).inventories;
      expect(row?.status).toBe("Ready");

      const early = await failure(
        admin.call("expungeImage", { path: { uuid: extra.uuid }, params: {} }),
      );
      expect(early.message).toMatch(/status Ready/);

      await admin.call("deleteImage", { path: { uuid: extra.uuid } });
      await admin.call("expungeImage", { path: { uuid: extra.uuid }, params: {} });
      const gone = await admin.query<Inventory>("queryImage", [`uuid=${extra.uuid}`]);
      expect(gone.inventories).toHaveLength(0);
      expect(() => execFileSync("test", ["-e", file])).toThrow();
    });
  });

  describe("local primary storage and root volumes", () => {
    let primary: Inventory;
    let image: Inventory;
    const psDir = () => join(work, "primary");
    const hex = () => randomUUID().replaceAll("-", "");
    const accountUuid = hex();

    const capacity = async () =>
      (await admin.query<Inventory>("queryPrimaryStorage", [`uuid=${primary.uuid}`]))
        .inventories[0]!;

    beforeAll(async () => {
      image = (
        await admin.call<{ inventory: Inventory }>("addImage", {
          params: {
            name: "root",
            url: `${files.url}/small.qcow2`,
            backupStorageUuids: [backupStorage.uuid],
          },
        })
      ).inventory;
    });

    it("adds local storage and measures each host", async () => {
      primary = (
        await admin.call<{ inventory: Inventory }>("addLocalPrimaryStorage", {
          params: { name: "local", url: psDir(), zoneUuid: host.zoneUuid },
        })
      ).inventory;
      expect(primary.totalCapacity).toBe(0);

      const attached = (
        await admin.call<{ inventory: Inventory }>("attachPrimaryStorageToCluster", {
          path: { clusterUuid: host.clusterUuid, primaryStorageUuid: primary.uuid },
          params: {},
        })
      ).inventory;
      expect(attached.attachedClusterUuids).toEqual([host.clusterUuid]);
      expect(attached.totalPhysicalCapacity).toBeGreaterThan(0);
      expect(attached.availableCapacity).toBe(attached.totalCapacity);

      const perHost = await admin.call<{ inventories: Inventory[] }>(
        "getLocalStorageHostDiskCapacity",
        { path: { primaryStorageUuid: primary.uuid } },
      );
      expect(perHost.inventories.map((row) => row.hostUuid)).toEqual([host.hostUuid]);

      const synced = await admin.call<{ inventory: Inventory }>("syncPrimaryStorageCapacity", {
        path: { uuid: primary.uuid },
        params: {},
      });
      expect(synced.inventory.status).toBe("Connected");
    });

    it("never overbooks concurrent root volume allocations", async () => {
      const before = Number((await capacity()).availableCapacity);
      const size = Number(image.size);
      // Room for exactly three root volumes above the reserved floor.
      await admin.call("updateGlobalConfig", {
        path: { category: "primaryStorage", name: "reservedCapacity" },
        params: { value: String(before - 3 * size - 1) },
      });
      const volumes = t.server.core.services.volumes!;
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, () =>
          t.server.core.transact((tx) =>
            volumes.allocateRootVolume(tx, {
              vmUuid: hex(),
              accountUuid,
              imageUuid: image.uuid,
              hostUuid: host.hostUuid,
            }),
          ),
        ),
      );
      const allocated = results.filter((result) => result.status === "fulfilled");
      expect(allocated).toHaveLength(3);
      const rejected = results.find(
        (result) => result.status === "rejected",
      ) as PromiseRejectedResult;
      expect(String(rejected.reason.message)).toMatch(/no primary storage reachable/);
      expect(Number((await capacity()).availableCapacity)).toBe(before - 3 * size);
    });

    it("instantiates a root volume through the image cache and deletes it", async () => {
      await admin.call("updateGlobalConfig", {
        path: { category: "primaryStorage", name: "reservedCapacity" },
        params: { value: "0" },
      });
      const volumes = t.server.core.services.volumes!;
      const vmUuid = hex();
      const before = Number((await capacity()).availableCapacity);
      const { volumeUuid } = await t.server.core.transact((tx) =>
        volumes.allocateRootVolume(tx, {
          vmUuid,
          accountUuid,
          imageUuid: image.uuid,
          hostUuid: host.hostUuid,
        }),
      );
      expect(Number((await capacity()).availableCapacity)).toBe(before - Number(image.size));

      const [first, second] = await Promise.all([
        volumes.instantiateRootVolume(volumeUuid, host.hostUuid),
        volumes.instantiateRootVolume(volumeUuid, host.hostUuid),
      ]);
      expect(first.installPath).toBe(second.installPath);
      const info = JSON.parse(
        execFileSync("qemu-img", ["info", "--output=json", "-U", first.installPath]).toString(),
      );
      expect(info["backing-filename"]).toContain(`imagecache/template/${image.uuid}`);
      expect(await volumes.vmVolumes(vmUuid)).toEqual([first]);

      const caches = await admin.query<Inventory>("queryImageCache", [`imageUuid=${image.uuid}`]);
      expect(caches.inventories).toHaveLength(1);
      expect(caches.inventories[0]?.hostUuid).toBe(host.hostUuid);

      const queried = await admin.query<Inventory>("queryVolume", [`uuid=${volumeUuid}`]);
      expect(queried.inventories[0]?.status).toBe("Ready");

      await volumes.deleteVmVolumes(vmUuid);
      expect(Number((await capacity()).availableCapacity)).toBe(before);
      expect(() => execFileSync("test", ["-e", first.installPath])).toThrow();
      expect(await volumes.vmVolumes(vmUuid)).toEqual([]);
    });
  });
});
