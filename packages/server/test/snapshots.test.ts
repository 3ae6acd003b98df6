import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCloud } from "./cloud.js";
import { failAgentReply, restartServer, stallAgent } from "./crash.js";
import { startTestServer, type TestServer } from "./harness.js";
import { backingChain } from "./qcow2.js";

type Inventory = Record<string, unknown> & { uuid: string };
type Volume = Inventory & { installPath: string };
type Snapshot = Inventory & {
  status: string;
  parentUuid: string | null;
  latest: boolean;
  primaryStorageInstallPath: string;
};

/**
 * Guest userdata, run at every boot. It prints the counter in /root/counter, writes the counter
 * plus one and syncs. Then it remounts the root filesystem read-only, so that a crash-consistent
 * snapshot taken after `TSNAP-WROTE` holds a clean filesystem.
 */
const COUNTER = `#!/bin/sh
mount -o remount,rw / || exit 1
n=0
[ -f /root/counter ] && n=$(cat /root/counter)
echo "TSNAP-READ: $n" >/dev/console
echo $((n + 1)) >/root/counter
sync
mount -o remount,ro /
echo "TSNAP-WROTE: $((n + 1))" >/dev/console
`;

async function failure(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }

  throw new Error("expected the call to fail");
}

describe("volume snapshots of a running guest", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;
  let vm: Inventory & { rootVolumeUuid: string };

  const consoleOf = async (uuid = vm.uuid) =>
    (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid } })).console;
  const volume = async () =>
    (await admin.query<Volume>("queryVolume", [`uuid=${vm.rootVolumeUuid}`])).inventories[0]!;
  const snapshot = async (uuid: string) =>
    (await admin.query<Snapshot>("queryVolumeSnapshot", [`uuid=${uuid}`])).inventories[0]!;
  const vmAction = async (api: string, params: Record<string, unknown> = {}) =>
    (
      await admin.call<{ inventory: Inventory & { state: string } }>(api, {
        path: { uuid: vm.uuid },
        params,
      })
    ).inventory;
  const take = async (name: string) =>
    (
      await admin.call<{ inventory: Snapshot }>("createVolumeSnapshot", {
        path: { volumeUuid: vm.rootVolumeUuid },
        params: { name },
      })
    ).inventory;

  const createVm = async (name: string, imageUuid: string) =>
    (
      await admin.call<{ inventory: Inventory & { rootVolumeUuid: string } }>("createVmInstance", {
        params: {
          name,
          imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
        systemTags: [`userdata::${Buffer.from(COUNTER).toString("base64")}`],
      })
    ).inventory;

  /** Waits for the guest to print `TSNAP-WROTE: n` and returns the counter it read before. */
  const waitForWrite = async (n: number, vmUuid = vm.uuid) => {
    const deadline = Date.now() + 240_000;
    let text = await consoleOf(vmUuid);

    while (!text.includes(`TSNAP-WROTE: ${n}`)) {
      if (Date.now() > deadline) {
        throw new Error(`the guest did not write ${n}; console: ${text.slice(-2000)}`);
      }

      await new Promise((resolve) => setTimeout(resolve, 500));
      text = await consoleOf(vmUuid);
    }

    const reads = text.split("\n").filter((line) => line.includes("TSNAP-READ:"));
    return Number(reads.at(-1)!.split("TSNAP-READ:")[1]);
  };

  beforeAll(async () => {
    t = await startTestServer("sqlite", {
      dataDir: mkdtempSync(join(tmpdir(), "tstack-snapshots-")),
    });
    admin = t.admin;
    cloud = await buildCloud(t, "172.30.98.0/24");
    vm = await createVm("snap-guest", cloud.imageUuid);
  }, 300_000);

  afterAll(async () => {
    await cloud?.cleanup();
    await t?.stop();

    if (t) {
      rmSync(t.dataDir, { recursive: true, force: true });
    }
  });

  it("reverts a guest's file to an online snapshot", async () => {
    expect(await waitForWrite(1)).toBe(0);
    const original = (await volume()).installPath;

    const s1 = await take("s1");
    expect(s1).toMatchObject({ status: "Ready", latest: true, parentUuid: null });
    expect(s1.primaryStorageInstallPath).toBe(original);
    const top1 = (await volume()).installPath;
    expect(backingChain(top1).slice(0, 2)).toEqual([top1, original]);

    // The reboot keeps the QEMU process, so the guest writes 2 into the new top file.
    await vmAction("rebootVmInstance");
    expect(await waitForWrite(2)).toBe(1);
    const s1b = await take("s1b");
    expect(s1b).toMatchObject({ parentUuid: s1.uuid, latest: true });

    const running = await failure(
      admin.call("revertVolumeFromSnapshot", { path: { uuid: s1.uuid }, params: {} }),
    );
    expect(running.message).toMatch(/is Running.*stopVmInstance/);

    await vmAction("stopVmInstance", { type: "cold" });
    await admin.call("revertVolumeFromSnapshot", { path: { uuid: s1.uuid }, params: {} });
    expect((await snapshot(s1.uuid)).latest).toBe(true);
    expect((await vmAction("startVmInstance")).state).toBe("Running");
    expect(await waitForWrite(2)).toBe(1);

    // A snapshot after the revert branches from s1, beside s1b.
    const s2 = await take("s2");
    expect(s2).toMatchObject({ parentUuid: s1.uuid, latest: true });
    const children = await admin.query<Snapshot>("queryVolumeSnapshot", [`parentUuid=${s1.uuid}`]);
    expect(children.inventories.map((child) => child.uuid).sort()).toEqual(
      [s1b.uuid, s2.uuid].sort(),
    );
    const top3 = (await volume()).installPath;
    expect(backingChain(top3).slice(0, 3)).toEqual([top3, s2.primaryStorageInstallPath, original]);
  });

  it("deletes only snapshots outside the open chain while running", async () => {
    const [s1] = (await admin.query<Snapshot>("queryVolumeSnapshot", ["name=s1"])).inventories;
    const [s1b] = (await admin.query<Snapshot>("queryVolumeSnapshot", ["name=s1b"])).inventories;

    const inChain = await failure(admin.call("deleteVolumeSnapshot", { path: { uuid: s1!.uuid } }));
    expect(inChain.message).toMatch(/reads through the snapshot's file; stop the VM/);
    expect((await snapshot(s1!.uuid)).status).toBe("Ready");

    await admin.call("deleteVolumeSnapshot", { path: { uuid: s1b!.uuid } });
    expect(existsSync(s1b!.primaryStorageInstallPath)).toBe(false);
    expect(await snapshot(s1b!.uuid)).toBeUndefined();
  });

  it("makes a bootable image of a snapshot", async () => {
    const [s2] = (await admin.query<Snapshot>("queryVolumeSnapshot", ["name=s2"])).inventories;

    const image = (
      await admin.call<{ inventory: Inventory }>("createRootVolumeTemplateFromVolumeSnapshot", {
        path: { snapshotUuid: s2!.uuid },
        params: { name: "from-s2", backupStorageUuids: [cloud.backupStorageUuid] },
      })
    ).inventory;

    expect(image.status).toBe("Ready");
    expect(image.mediaType).toBe("RootVolumeTemplate");
    expect(image.url).toBe(`volume-snapshot://${s2!.uuid}`);
    const refs = image.backupStorageRefs as { installPath: string }[];
    expect(backingChain(refs[0]!.installPath)).toEqual([refs[0]!.installPath]);

    // s2 froze the disk with the counter at 2, so a VM made from the image reads 2.
    const copy = await createVm("from-s2", image.uuid);
    expect(await waitForWrite(3, copy.uuid)).toBe(2);
    await admin.call("destroyVmInstance", { path: { uuid: copy.uuid } });
    await admin.call("expungeVmInstance", { path: { uuid: copy.uuid }, params: {} });

    const wrongType = await failure(
      admin.call("createDataVolumeTemplateFromVolumeSnapshot", {
        path: { snapshotUuid: s2!.uuid },
        params: { name: "wrong", backupStorageUuids: [cloud.backupStorageUuid] },
      }),
    );
    expect(wrongType.message).toMatch(/is of a Root volume; use the root volume template API/);
  });

  it("merges every snapshot once the VM is stopped", async () => {
    await vmAction("stopVmInstance", { type: "cold" });

    for (const row of (await admin.query<Snapshot>("queryVolumeSnapshot")).inventories) {
      await admin.call("deleteVolumeSnapshot", { path: { uuid: row.uuid } });
    }

    expect((await admin.query("queryVolumeSnapshot")).inventories).toEqual([]);
    const top = (await volume()).installPath;
    expect(backingChain(top)).toHaveLength(2);
    execFileSync("qemu-img", ["check", top]);

    expect((await vmAction("startVmInstance")).state).toBe("Running");
    expect(await waitForWrite(3)).toBe(2);
  });

  it("completes an online snapshot after a restart", async () => {
    const stalled = stallAgent(t.server, "callAsync", "/vm/volume/snapshot", true);
    const pending = take("crash").catch((error: Error) => error);

    await stalled;
    t = await restartServer(t);

    const [crash] = (await admin.query<Snapshot>("queryVolumeSnapshot", ["name=crash"]))
      .inventories;
    expect(crash).toMatchObject({ status: "Ready", latest: true });
    const top = (await volume()).installPath;
    expect(backingChain(top)[1]).toBe(crash!.primaryStorageInstallPath);
    expect(await pending).toBeInstanceOf(Error);

    // The guest writes 4 into the file QEMU switched to, and a cold start boots from that file.
    await vmAction("rebootVmInstance");
    expect(await waitForWrite(4)).toBe(3);
    await vmAction("stopVmInstance", { type: "cold" });
    expect((await vmAction("startVmInstance")).state).toBe("Running");
    expect(await waitForWrite(5)).toBe(4);
  });

  it("retries an online snapshot that failed after QEMU switched", async () => {
    // Without the retry, the reported failure would remove the row while QEMU writes to the new top.
    failAgentReply(t.server, "callAsync", "/vm/volume/snapshot", {
      send: true,
      unreachable: false,
    });

    const lost = await take("lost-reply");

    expect(lost).toMatchObject({ status: "Ready", latest: true });
    const top = (await volume()).installPath;
    expect(backingChain(top)[1]).toBe(lost.primaryStorageInstallPath);
    const rows = await admin.query<Snapshot>("queryVolumeSnapshot", ["name=lost-reply"]);
    expect(rows.inventories).toHaveLength(1);
  });
});
