import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCloud } from "./cloud.js";
import { dialects, startTestServer, type TestServer } from "./harness.js";
import { backingChain } from "./qcow2.js";

type Inventory = Record<string, unknown> & { uuid: string };
type Volume = Inventory & { status: string; installPath: string | null; size: number };
type Snapshot = Inventory & {
  parentUuid: string | null;
  latest: boolean;
  primaryStorageInstallPath: string;
};

const MiB = 1024 * 1024;

async function failure(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string; status?: number };
  }

  throw new Error("expected the call to fail");
}

describe.each(dialects)("data volume contract on %s", (dialect) => {
  let t: TestServer;
  let admin: TstackClient;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = t.admin;
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
  });

  const volume = async (uuid: string) =>
    (await admin.query<Volume>("queryVolume", [`uuid=${uuid}`])).inventories[0];

  it("rejects invalid sizes and offerings", async () => {
    const zero = await failure(
      admin.call("createDataVolume", { params: { name: "d", diskSize: 0 } }),
    );
    expect(zero.status).toBe(400);
    expect(zero.message).toMatch(/diskSize/);

    const unknown = await failure(
      admin.call("createDataVolume", {
        params: { name: "d", diskOfferingUuid: "0123456789abcdef0123456789abcdef" },
      }),
    );
    expect(unknown.status).toBe(400);
    expect(unknown.message).toMatch(/params.diskOfferingUuid: .*not found/);

    const neither = await failure(admin.call("createDataVolume", { params: { name: "d" } }));
    expect(neither.message).toMatch(/exactly one/);

    const noStorage = await failure(
      admin.call("createDataVolume", {
        params: {
          name: "d",
          diskSize: 64 * MiB,
          primaryStorageUuid: "0123456789abcdef0123456789abcdef",
        },
      }),
    );
    expect(noStorage.message).toMatch(/params.primaryStorageUuid/);
  });

  it("manages a NotInstantiated data volume", async () => {
    const offering = (
      await admin.call<{ inventory: Inventory }>("createDiskOffering", {
        params: { name: "d64", diskSize: 64 * MiB },
      })
    ).inventory;
    const created = (
      await admin.call<{ inventory: Volume }>("createDataVolume", {
        params: { name: "data", diskOfferingUuid: offering.uuid },
      })
    ).inventory;
    expect(created).toMatchObject({
      type: "Data",
      status: "NotInstantiated",
      size: 64 * MiB,
      diskOfferingUuid: offering.uuid,
      primaryStorageUuid: null,
    });

    const renamed = await admin.call<{ inventory: Volume }>("updateVolume", {
      path: { uuid: created.uuid },
      params: { name: "renamed" },
    });
    expect(renamed.inventory.name).toBe("renamed");
    const disabled = await admin.call<{ inventory: Volume }>("changeVolumeState", {
      path: { uuid: created.uuid },
      params: { stateEvent: "disable" },
    });
    expect(disabled.inventory.state).toBe("Disabled");

    const notDeleted = await failure(
      admin.call("expungeDataVolume", { path: { uuid: created.uuid }, params: {} }),
    );
    expect(notDeleted.message).toMatch(/status is NotInstantiated, expected Deleted/);

    await admin.call("deleteDataVolume", { path: { uuid: created.uuid } });
    expect((await volume(created.uuid))?.status).toBe("Deleted");
    const twice = await failure(admin.call("deleteDataVolume", { path: { uuid: created.uuid } }));
    expect(twice.message).toMatch(/status is Deleted/);

    const recovered = await admin.call<{ inventory: Volume }>("recoverDataVolume", {
      path: { uuid: created.uuid },
      params: {},
    });
    expect(recovered.inventory.status).toBe("NotInstantiated");

    await admin.call("deleteDataVolume", { path: { uuid: created.uuid } });
    await admin.call("expungeDataVolume", { path: { uuid: created.uuid }, params: {} });
    expect(await volume(created.uuid)).toBeUndefined();
  });

  it("checks attach, detach and resize requests", async () => {
    const created = (
      await admin.call<{ inventory: Volume }>("createDataVolume", {
        params: { name: "rules", diskSize: 64 * MiB },
      })
    ).inventory;

    const noVm = await failure(
      admin.call("attachDataVolumeToVm", {
        path: { volumeUuid: created.uuid, vmInstanceUuid: "0123456789abcdef0123456789abcdef" },
        params: {},
      }),
    );
    expect(noVm.status).toBe(404);
    expect(noVm.message).toMatch(/VmInstance 0123456789abcdef0123456789abcdef was not found/);

    const notAttached = await failure(
      admin.call("detachDataVolumeFromVm", { path: { uuid: created.uuid } }),
    );
    expect(notAttached.status).toBe(409);
    expect(notAttached.message).toMatch(/not attached to a VM/);

    const candidates = await admin.call<{ inventories: unknown[] }>("getDataVolumeAttachableVm", {
      path: { volumeUuid: created.uuid },
    });
    expect(candidates.inventories).toEqual([]);

    const shrink = await failure(
      admin.call("resizeDataVolume", { path: { uuid: created.uuid }, params: { size: 32 * MiB } }),
    );
    expect(shrink.status).toBe(400);
    expect(shrink.message).toMatch(/params.size: 33554432 is not larger than the current/);

    const grown = await admin.call<{ inventory: Volume }>("resizeDataVolume", {
      path: { uuid: created.uuid },
      params: { size: 128 * MiB },
    });
    expect(grown.inventory.size).toBe(128 * MiB);
    expect(grown.inventory.status).toBe("NotInstantiated");

    await admin.call("deleteDataVolume", { path: { uuid: created.uuid } });
    await admin.call("expungeDataVolume", { path: { uuid: created.uuid }, params: {} });
  });

  it("queries volume snapshots", async () => {
    expect((await admin.query("queryVolumeSnapshot")).inventories).toEqual([]);
  });
});

describe("data volumes and snapshots on the local host", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;

  const storage = async () =>
    (
      await admin.query<Inventory & { availableCapacity: number }>("queryPrimaryStorage", [
        `uuid=${cloud.primaryStorageUuid}`,
      ])
    ).inventories[0]!;
  const volume = async (uuid: string) =>
    (await admin.query<Volume>("queryVolume", [`uuid=${uuid}`])).inventories[0]!;
  const snapshot = async (uuid: string) =>
    (await admin.query<Snapshot>("queryVolumeSnapshot", [`uuid=${uuid}`])).inventories[0]!;
  const vmAction = async (api: string, vmUuid: string, params: Record<string, unknown> = {}) =>
    (
      await admin.call<{ inventory: Inventory & { state: string } }>(api, {
        path: { uuid: vmUuid },
        params,
      })
    ).inventory;

  beforeAll(async () => {
    t = await startTestServer("sqlite");
    admin = t.admin;
    cloud = await buildCloud(t, "172.30.93.0/24");
  }, 300_000);

  afterAll(async () => {
    await cloud?.cleanup();
    await t?.stop();
  });

  it("data volume lifecycle and capacity", async () => {
    const before = (await storage()).availableCapacity;
    const created = (
      await admin.call<{ inventory: Volume }>("createDataVolume", {
        params: { name: "data", diskSize: 256 * MiB, primaryStorageUuid: cloud.primaryStorageUuid },
      })
    ).inventory;
    expect(created.status).toBe("Ready");
    expect(existsSync(created.installPath!)).toBe(true);
    expect(created.installPath).toMatch(/dataVolumes/);
    const reserved = before - (await storage()).availableCapacity;
    expect(reserved).toBeGreaterThan(0);
    expect(reserved).toBeLessThanOrEqual(256 * MiB);

    await admin.call("deleteDataVolume", { path: { uuid: created.uuid } });
    expect((await volume(created.uuid)).status).toBe("Deleted");
    expect(existsSync(created.installPath!)).toBe(true);
    expect((await storage()).availableCapacity).toBe(before - reserved);

    const recovered = await admin.call<{ inventory: Volume }>("recoverDataVolume", {
      path: { uuid: created.uuid },
      params: {},
    });
    expect(recovered.inventory.status).toBe("Ready");

    await admin.call("deleteDataVolume", { path: { uuid: created.uuid } });
    await admin.call("expungeDataVolume", { path: { uuid: created.uuid }, params: {} });
    expect(existsSync(created.installPath!)).toBe(false);
    expect((await storage()).availableCapacity).toBe(before);
  });

  it("data volume snapshot and expunge", async () => {
    const before = (await storage()).availableCapacity;
    const data = (
      await admin.call<{ inventory: Volume }>("createDataVolume", {
        params: {
          name: "snap-data",
          diskSize: 64 * MiB,
          primaryStorageUuid: cloud.primaryStorageUuid,
        },
      })
    ).inventory;
    const taken = (
      await admin.call<{ inventory: Snapshot }>("createVolumeSnapshot", {
        path: { volumeUuid: data.uuid },
        params: { name: "d1" },
      })
    ).inventory;
    expect(taken.primaryStorageInstallPath).toBe(data.installPath);
    const top = (await volume(data.uuid)).installPath!;
    expect(backingChain(top)).toEqual([top, data.installPath]);

    const reverted = await admin.call<{ inventory: Volume }>("revertVolumeFromSnapshot", {
      path: { uuid: taken.uuid },
      params: {},
    });
    expect(existsSync(top)).toBe(false);
    expect(backingChain(reverted.inventory.installPath!)).toEqual([
      reverted.inventory.installPath,
      data.installPath,
    ]);

    await admin.call("deleteDataVolume", { path: { uuid: data.uuid } });
    await admin.call("expungeDataVolume", { path: { uuid: data.uuid }, params: {} });
    expect(existsSync(data.installPath!)).toBe(false);
    expect((await admin.query("queryVolumeSnapshot", [`uuid=${taken.uuid}`])).inventories).toEqual(
      [],
    );
    expect((await storage()).availableCapacity).toBe(before);
  });

  it("rejects a volume beyond free capacity", async () => {
    const error = await failure(
      admin.call("createDataVolume", {
        params: { name: "huge", diskSize: 1024 ** 5, primaryStorageUuid: cloud.primaryStorageUuid },
      }),
    );
    expect(error.message).toMatch(/has not \d+ bytes free/);
    expect((await admin.query("queryVolume", ["name=huge"])).inventories).toEqual([]);
  });

  it("root volume snapshots of a stopped VM", async () => {
    const vm = (
      await admin.call<{ inventory: Inventory & { rootVolumeUuid: string } }>("createVmInstance", {
        params: {
          name: "snap-vm",
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
      })
    ).inventory;
    const root = vm.rootVolumeUuid;
    const original = (await volume(root)).installPath!;
    const cache = backingChain(original)[1]!;

    await vmAction("stopVmInstance", vm.uuid, { type: "cold" });
    const capacity = (await storage()).availableCapacity;
    const s1 = (
      await admin.call<{ inventory: Snapshot }>("createVolumeSnapshot", {
        path: { volumeUuid: root },
        params: { name: "s1" },
      })
    ).inventory;
    expect(s1).toMatchObject({ status: "Ready", latest: true, parentUuid: null });
    expect(s1.primaryStorageInstallPath).toBe(original);
    const top1 = (await volume(root)).installPath!;
    expect(backingChain(top1)).toEqual([top1, original, cache]);

    // The VM boots from the new top, so its writes land there and leave s1 untouched.
    expect((await vmAction("startVmInstance", vm.uuid)).state).toBe("Running");
    const runningRevert = await failure(
      admin.call("revertVolumeFromSnapshot", { path: { uuid: s1.uuid }, params: {} }),
    );
    expect(runningRevert.message).toMatch(/is Running.*stopVmInstance/);
    await vmAction("stopVmInstance", vm.uuid, { type: "cold" });

    const reverted = (
      await admin.call<{ inventory: Volume }>("revertVolumeFromSnapshot", {
        path: { uuid: s1.uuid },
        params: {},
      })
    ).inventory;
    const top2 = reverted.installPath!;
    expect(top2).not.toBe(top1);
    expect(existsSync(top1)).toBe(false);
    expect(backingChain(top2)).toEqual([top2, original, cache]);

    const s2 = (
      await admin.call<{ inventory: Snapshot }>("createVolumeSnapshot", {
        path: { volumeUuid: root },
        params: { name: "s2" },
      })
    ).inventory;
    expect(s2).toMatchObject({ parentUuid: s1.uuid, latest: true });
    expect((await snapshot(s1.uuid)).latest).toBe(false);
    const top3 = (await volume(root)).installPath!;
    expect(backingChain(top3)).toEqual([top3, top2, original, cache]);

    // Deleting s1 merges it into s2's file, which then rests on the image cache.
    await admin.call("deleteVolumeSnapshot", { path: { uuid: s1.uuid } });
    expect(existsSync(original)).toBe(false);
    expect(backingChain(top3)).toEqual([top3, top2, cache]);
    expect((await snapshot(s2.uuid)).parentUuid).toBeNull();

    await admin.call("deleteVolumeSnapshot", { path: { uuid: s2.uuid } });
    expect(backingChain(top3)).toEqual([top3, cache]);
    expect((await admin.query("queryVolumeSnapshot")).inventories).toEqual([]);
    expect((await storage()).availableCapacity).toBe(capacity);
    execFileSync("qemu-img", ["check", top3]);

    expect((await vmAction("startVmInstance", vm.uuid)).state).toBe("Running");
  });
});
