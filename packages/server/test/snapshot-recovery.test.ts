import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCloud } from "./cloud.js";
import { failAgentReply, restartServer, stallAgent } from "./crash.js";
import { startTestServer, type TestServer } from "./harness.js";
import { backingChain } from "./qcow2.js";

type Inventory = Record<string, unknown> & { uuid: string };
type Volume = Inventory & { installPath: string; topFileUuid?: string };
type Snapshot = Inventory & { status: string; latest: boolean; primaryStorageInstallPath: string };

const MiB = 1024 * 1024;

describe("snapshot recovery after a management node restart", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "tstack-snap-recovery-"));
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;

  const volume = async (uuid: string) =>
    (await admin.query<Volume>("queryVolume", [`uuid=${uuid}`])).inventories[0]!;
  const snapshots = async (volumeUuid: string) =>
    (await admin.query<Snapshot>("queryVolumeSnapshot", [`volumeUuid=${volumeUuid}`])).inventories;
  const capacity = async () =>
    (
      await admin.query<Inventory & { availableCapacity: number }>("queryPrimaryStorage", [
        `uuid=${cloud.primaryStorageUuid}`,
      ])
    ).inventories[0]!.availableCapacity;
  const createVolume = async (name: string) =>
    (
      await admin.call<{ inventory: Volume }>("createDataVolume", {
        params: { name, diskSize: 32 * MiB, primaryStorageUuid: cloud.primaryStorageUuid },
      })
    ).inventory;

  beforeAll(async () => {
    t = await startTestServer("sqlite", { dataDir });
    admin = t.admin;
    cloud = await buildCloud(t, "172.30.99.0/24");
  }, 300_000);

  afterAll(async () => {
    await cloud?.cleanup();
    await t?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("removes a snapshot the agent never took", async () => {
    const data = await createVolume("never-taken");
    const before = await capacity();
    const stalled = stallAgent(t.server, "call", "/storage/snapshot/take", false);
    const pending = admin
      .call("createVolumeSnapshot", { path: { volumeUuid: data.uuid }, params: { name: "lost" } })
      .catch((error: Error) => error);

    await stalled;
    expect((await snapshots(data.uuid)).map((row) => row.status)).toEqual(["Creating"]);
    t = await restartServer(t);

    expect(await snapshots(data.uuid)).toEqual([]);
    expect(await capacity()).toBe(before);
    expect((await volume(data.uuid)).installPath).toBe(data.installPath);
    expect(backingChain(data.installPath)).toEqual([data.installPath]);
    // The job fails either way: the SDK's poll may reach the node while it still recovers.
    expect(await pending).toBeInstanceOf(Error);
  });

  it("completes a snapshot the agent took", async () => {
    const data = await createVolume("taken");
    const stalled = stallAgent(t.server, "call", "/storage/snapshot/take", true);
    const pending = admin
      .call("createVolumeSnapshot", { path: { volumeUuid: data.uuid }, params: { name: "kept" } })
      .catch((error: Error) => error);

    await stalled;
    t = await restartServer(t);

    const [kept] = await snapshots(data.uuid);
    expect(kept).toMatchObject({ name: "kept", status: "Ready", latest: true });
    expect(kept!.primaryStorageInstallPath).toBe(data.installPath);
    const top = (await volume(data.uuid)).installPath;
    expect(top).not.toBe(data.installPath);
    expect(backingChain(top)).toEqual([top, data.installPath]);
    await pending;
  });

  it("returns a snapshot left Deleting to Ready", async () => {
    const data = await createVolume("deleting");
    const taken = (
      await admin.call<{ inventory: Snapshot }>("createVolumeSnapshot", {
        path: { volumeUuid: data.uuid },
        params: { name: "half-deleted" },
      })
    ).inventory;
    const stalled = stallAgent(t.server, "callAsync", "/storage/snapshot/delete", true);
    const pending = admin
      .call("deleteVolumeSnapshot", { path: { uuid: taken.uuid } })
      .catch((error: Error) => error);

    await stalled;
    t = await restartServer(t);

    expect((await snapshots(data.uuid)).map((row) => row.status)).toEqual(["Ready"]);
    await admin.call("deleteVolumeSnapshot", { path: { uuid: taken.uuid } });
    expect(await snapshots(data.uuid)).toEqual([]);
    const top = (await volume(data.uuid)).installPath;
    expect(backingChain(top)).toEqual([top]);
    await pending;
  });

  it("completes a snapshot whose reply was lost", async () => {
    const data = await createVolume("reply-lost");
    failAgentReply(t.server, "call", "/storage/snapshot/take", { send: true, unreachable: true });

    const taken = (
      await admin.call<{ inventory: Snapshot }>("createVolumeSnapshot", {
        path: { volumeUuid: data.uuid },
        params: { name: "reply-lost" },
      })
    ).inventory;

    expect(taken).toMatchObject({ status: "Ready", latest: true });
    expect(taken.primaryStorageInstallPath).toBe(data.installPath);
    const top = (await volume(data.uuid)).installPath;
    expect(backingChain(top)).toEqual([top, data.installPath]);
  });

  it("removes a snapshot the unreachable agent never took", async () => {
    const data = await createVolume("unreachable");
    const before = await capacity();
    failAgentReply(t.server, "call", "/storage/snapshot/take", { send: false, unreachable: true });

    const error = await admin
      .call("createVolumeSnapshot", { path: { volumeUuid: data.uuid }, params: { name: "gone" } })
      .catch((reason: Error) => reason);

    expect(String(error)).toMatch(/failed to snapshot volume .* offline.*timed out/);
    expect(await snapshots(data.uuid)).toEqual([]);
    expect(await capacity()).toBe(before);
  });
});
