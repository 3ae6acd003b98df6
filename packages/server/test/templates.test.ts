import { execFileSync } from "node:child_process";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCloud } from "./cloud.js";
import { startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

async function failure(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }

  throw new Error("expected the call to fail");
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;

  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    }

    await new Promise((done) => setTimeout(done, 250));
  }
}

/** Reads the virtual size and backing file of an image file, as qemu-img sees it on disk. */
function qcow2(path: string) {
  const output = execFileSync("qemu-img", ["info", "-U", "--output=json", path], {
    encoding: "utf8",
  });
  return JSON.parse(output) as { "virtual-size": number; "backing-filename"?: string };
}

describe("images from volumes", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;
  let vm: Inventory & { rootVolumeUuid: string };

  const createVm = async (name: string, imageUuid: string) =>
    (
      await admin.call<{ inventory: Inventory & { rootVolumeUuid: string } }>("createVmInstance", {
        params: {
          name,
          imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
      })
    ).inventory;
  const consoleOf = async (uuid: string) =>
    (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid } })).console;
  const fromRoot = (rootVolumeUuid: string, name: string) =>
    admin.call<{ inventory: Inventory }>("createRootVolumeTemplateFromRootVolume", {
      path: { rootVolumeUuid },
      params: { name, backupStorageUuids: [cloud.backupStorageUuid] },
    });

  beforeAll(async () => {
    t = await startTestServer("sqlite");
    admin = t.admin;
    cloud = await buildCloud(t, "172.30.94.0/24");
    vm = await createVm("source", cloud.imageUuid);
  }, 300_000);

  afterAll(async () => {
    await cloud?.cleanup();
    await t?.stop();
  });

  it("rejects the root volume of a running VM", async () => {
    const error = await failure(fromRoot(vm.rootVolumeUuid, "too-soon"));

    expect(error.message).toMatch(/is Running; stop the VM first/);
    expect((await admin.query("queryImage", ["name=too-soon"])).inventories).toEqual([]);
  });

  it("makes a bootable image of a stopped VM's root volume", async () => {
    await admin.call("stopVmInstance", { path: { uuid: vm.uuid }, params: { type: "cold" } });

    const image = (await fromRoot(vm.rootVolumeUuid, "golden")).inventory;

    expect(image.status).toBe("Ready");
    expect(image.mediaType).toBe("RootVolumeTemplate");
    expect(image.format).toBe("qcow2");
    expect(image.sha256).toMatch(/^[0-9a-f]{64}$/);
    const refs = image.backupStorageRefs as { installPath: string; status: string }[];
    expect(refs.map((ref) => ref.status)).toEqual(["Ready"]);
    const file = qcow2(refs[0]!.installPath);
    expect(file["backing-filename"]).toBeUndefined();
    expect(file["virtual-size"]).toBe(image.size);

    const copy = await createVm("from-golden", image.uuid);
    await until(
      async () => (await consoleOf(copy.uuid)).includes("TSTACK-GUEST: boot-ok"),
      "the copy's boot",
    );
  });

  it("makes an image of a free data volume", async () => {
    const volume = (
      await admin.call<{ inventory: Inventory }>("createDataVolume", {
        params: {
          name: "data",
          diskSize: 16 * 1024 * 1024,
          primaryStorageUuid: cloud.primaryStorageUuid,
        },
      })
    ).inventory;

    const image = (
      await admin.call<{ inventory: Inventory }>("createDataVolumeTemplateFromVolume", {
        path: { volumeUuid: volume.uuid },
        params: { name: "data-template", backupStorageUuids: [cloud.backupStorageUuid] },
      })
    ).inventory;

    expect(image.status).toBe("Ready");
    expect(image.mediaType).toBe("DataVolumeTemplate");
    expect(image.size).toBe(16 * 1024 * 1024);
  });

  it("rejects a volume of the other type", async () => {
    const error = await failure(
      admin.call("createDataVolumeTemplateFromVolume", {
        path: { volumeUuid: vm.rootVolumeUuid },
        params: { name: "wrong", backupStorageUuids: [cloud.backupStorageUuid] },
      }),
    );

    expect(error.message).toMatch(/is a Root volume; use the root volume template API/);
  });
});
