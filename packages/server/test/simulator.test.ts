import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sha512Hex } from "@tstack/api";
import { ApiRequestError, type TstackClient } from "@tstack/sdk";
import type { NodeState } from "@tstack/simulator";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { newUuid } from "../src/core/ids.js";
import { simulatorLink } from "../src/simulator/link.js";
import { dialects, raw, startTestServer, type TestServer } from "./harness.js";
import { buildSimulatorCloud } from "./simulator-cloud.js";

type Vm = { uuid: string; state: string; hostUuid: string | null } & Record<string, unknown>;
type Fault = { uuid: string; usesLeft: number | null } & Record<string, unknown>;

const GiB = 1024 ** 3;

async function until<T>(
  read: () => Promise<T>,
  accept: (value: T) => boolean,
  what: string,
  timeoutMs = 90_000,
) {
  const deadline = Date.now() + timeoutMs;
  let value = await read();

  while (!accept(value)) {
    if (Date.now() > deadline) {
      throw new Error(`${what} did not happen; last value: ${JSON.stringify(value).slice(0, 500)}`);
    }

    await new Promise((resolve) => setTimeout(resolve, 200));
    value = await read();
  }

  return value;
}

async function apiError(promise: Promise<unknown>) {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(ApiRequestError);
  return error as ApiRequestError;
}

/** Runs `work` over `items` with at most `limit` in flight. */
async function pool<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>) {
  const results: R[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

describe.each(dialects)("simulator on %s", (dialect) => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildSimulatorCloud>>;

  const simulatorState = async (uuid?: string) => {
    const { control } = await simulatorLink(t.server.core);
    return control.state(uuid);
  };

  const vmsOnSimulator = (nodes: NodeState[]) =>
    nodes.flatMap((node) => node.vms ?? []).map((vm) => vm.vmUuid);

  const createVm = async (name: string) =>
    (
      await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name,
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
      })
    ).inventory;

  const vmAction = async (api: string, uuid: string) =>
    (await admin.call<{ inventory: Vm }>(api, { path: { uuid }, params: {} })).inventory;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = t.admin;
    cloud = await buildSimulatorCloud(admin, { hosts: 3, cidr: "10.61.0.0/22", prefix: "tsim" });
  });

  afterEach(async () => {
    await admin.call("deleteAllSimulatorFaults", {});
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("snapshots a running VM's volume", async () => {
    const vm = await createVm("snapshot");
    const root = { volumeUuid: String(vm.rootVolumeUuid) };

    const snapshot = (
      await admin.call<{ inventory: { status: string; latest: boolean } }>("createVolumeSnapshot", {
        path: root,
        params: { name: "online" },
      })
    ).inventory;

    expect(snapshot.status).toBe("Ready");
    expect(snapshot.latest).toBe(true);
    await vmAction("destroyVmInstance", vm.uuid);
    await admin.call("expungeVmInstance", { path: { uuid: vm.uuid }, params: {} });
  });

  it("runs a VM lifecycle on simulator hosts", async () => {
    const vm = await createVm("lifecycle");
    const [host] = await simulatorState(vm.hostUuid!);

    expect(vm.state).toBe("Running");
    expect(host?.vms?.map((entry) => entry.vmUuid)).toEqual([vm.uuid]);
    expect(Object.values(host?.dhcp?.[cloud.l3NetworkUuid] ?? {})).toHaveLength(1);

    expect((await vmAction("stopVmInstance", vm.uuid)).state).toBe("Stopped");
    expect(vmsOnSimulator(await simulatorState())).not.toContain(vm.uuid);

    const started = await vmAction("startVmInstance", vm.uuid);
    expect(started.state).toBe("Running");
    expect(vmsOnSimulator(await simulatorState(started.hostUuid!))).toContain(vm.uuid);

    expect((await vmAction("rebootVmInstance", vm.uuid)).state).toBe("Running");
    expect((await vmAction("pauseVmInstance", vm.uuid)).state).toBe("Paused");
    const [paused] = await simulatorState(started.hostUuid!);
    expect(paused?.vms?.find((entry) => entry.vmUuid === vm.uuid)?.state).toBe("Paused");
    expect((await vmAction("resumeVmInstance", vm.uuid)).state).toBe("Running");

    expect((await vmAction("destroyVmInstance", vm.uuid)).state).toBe("Destroyed");
    expect(vmsOnSimulator(await simulatorState())).not.toContain(vm.uuid);

    await admin.call("expungeVmInstance", { path: { uuid: vm.uuid }, params: {} });
    const [primary] = await simulatorState(cloud.primaryStorageUuid);
    const hosts = await simulatorState();
    const leftMacs = hosts.flatMap((node) =>
      Object.values(node.dhcp ?? {}).flatMap((entries) => Object.keys(entries)),
    );
    expect(primary?.volumes?.map((volume) => volume.volumeUuid)).not.toContain(
      String(vm.rootVolumeUuid),
    );
    expect(leftMacs).toEqual([]);
  });

  it("collects an unused image cache entry", async () => {
    const image = (
      await admin.call<{ inventory: { uuid: string } }>("addImage", {
        params: {
          name: "collected",
          url: "http://192.0.2.10/images/collected.qcow2",
          format: "qcow2",
          mediaType: "RootVolumeTemplate",
          backupStorageUuids: [cloud.backupStorageUuid],
        },
      })
    ).inventory;
    const keeper = await createVm("keeps-cache");
    const expunged = (
      await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name: "drops-cache",
          imageUuid: image.uuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          strategy: "CreateStopped",
        },
      })
    ).inventory;
    await vmAction("destroyVmInstance", expunged.uuid);
    await admin.call("expungeVmInstance", { path: { uuid: expunged.uuid }, params: {} });
    const gracePath = {
      category: "primaryStorage",
      name: "imageCache.garbageCollector.gracePeriod",
    };
    await admin.call("updateGlobalConfig", { path: gracePath, params: { value: "1" } });
    // Lets the 1 s grace period pass for the entry filled above.
    await new Promise((resolve) => setTimeout(resolve, 1500));

    await admin.call("cleanUpImageCacheOnPrimaryStorage", {
      path: { uuid: cloud.primaryStorageUuid },
      params: {},
    });

    const rows = (
      await admin.query<{ imageUuid: string }>("queryImageCache", [
        `primaryStorageUuid=${cloud.primaryStorageUuid}`,
      ])
    ).inventories.map((row) => row.imageUuid);
    const [primary] = await simulatorState(cloud.primaryStorageUuid);
    expect(rows).not.toContain(image.uuid);
    expect(rows).toContain(cloud.imageUuid);
    expect(primary?.imageCache).not.toContain(image.uuid);
    expect(primary?.imageCache).toContain(cloud.imageUuid);

    await admin.call("updateGlobalConfig", { path: gracePath, params: { value: "3600" } });
    await vmAction("destroyVmInstance", keeper.uuid);
    await admin.call("expungeVmInstance", { path: { uuid: keeper.uuid }, params: {} });
  });

  it("rolls back a create that fails on a fault", async () => {
    const capacity = async () =>
      admin.call<Record<string, number>>("getCpuMemoryCapacity", {
        query: { clusterUuids: cloud.clusterUuid },
      });
    const ips = async () =>
      admin.call<Record<string, number>>("getIpAddressCapacity", {
        query: { l3NetworkUuids: cloud.l3NetworkUuid },
      });
    const capacityBefore = await capacity();
    const ipsBefore = await ips();
    const [primaryBefore] = await simulatorState(cloud.primaryStorageUuid);
    await admin.call("createSimulatorFault", {
      params: { path: "/vm/start", kind: "fail", errorText: "simulated QEMU crash", count: 1 },
    });

    const error = await apiError(createVm("doomed"));

    const [primaryAfter] = await simulatorState(cloud.primaryStorageUuid);
    const left = await admin.query<Vm>("queryVmInstance", ["name=doomed"]);
    const volumes = await admin.query<{ uuid: string }>("queryVolume", ["name~=%doomed%"]);
    const faults = await admin.call<{ inventories: Fault[] }>("querySimulatorFault", {});
    expect(`${error.message} ${error.details ?? ""}`).toContain("simulated QEMU crash");
    expect(await capacity()).toEqual(capacityBefore);
    expect(await ips()).toEqual(ipsBefore);
    expect(primaryAfter?.volumes?.length).toBe(primaryBefore?.volumes?.length);
    expect(left.inventories).toEqual([]);
    expect(volumes.inventories).toEqual([]);
    expect(vmsOnSimulator(await simulatorState())).toEqual([]);
    expect(faults.inventories).toEqual([]);
  });

  it("failed first start returns to Created", async () => {
    const capacity = async () =>
      admin.call<Record<string, number>>("getCpuMemoryCapacity", {
        query: { clusterUuids: cloud.clusterUuid },
      });
    const ips = async () =>
      admin.call<Record<string, number>>("getIpAddressCapacity", {
        query: { l3NetworkUuids: cloud.l3NetworkUuid },
      });
    const capacityBefore = await capacity();
    const ipsBefore = await ips();
    const created = (
      await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name: "just-created",
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
          strategy: "JustCreate",
        },
      })
    ).inventory;
    await admin.call("createSimulatorFault", {
      params: { path: "/vm/start", kind: "fail", errorText: "simulated QEMU crash", count: 1 },
    });

    const error = await apiError(vmAction("startVmInstance", created.uuid));

    const [after] = (await admin.query<Vm>("queryVmInstance", [`uuid=${created.uuid}`]))
      .inventories;
    expect(`${error.message} ${error.details ?? ""}`).toContain("simulated QEMU crash");
    expect(after).toMatchObject({ state: "Created", hostUuid: null, rootVolumeUuid: null });
    expect(after?.vmNics).toEqual([]);
    expect(after?.allVolumes).toEqual([]);
    expect(await capacity()).toEqual(capacityBefore);
    expect(await ips()).toEqual(ipsBefore);

    const started = await vmAction("startVmInstance", created.uuid);
    expect(started.state).toBe("Running");
    expect(started.vmNics).toHaveLength(1);

    await vmAction("destroyVmInstance", created.uuid);
    await admin.call("expungeVmInstance", { path: { uuid: created.uuid }, params: {} });
  });

  it("long-polls a create to its end", async () => {
    const headers = {
      authorization: `OAuth ${admin.session}`,
      "content-type": "application/json",
    };
    await admin.call("createSimulatorFault", {
      params: { path: "/vm/start", kind: "delay", delayMs: 1500, count: 1 },
    });
    const accepted = await raw(t.server, "POST", "/vm-instances", {
      headers,
      body: JSON.stringify({
        params: {
          name: "long-poll",
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
      }),
    });
    const jobPath = new URL(String(accepted.json.location)).pathname.replace("/zstack/v1", "");

    const ended = await raw(t.server, "GET", `${jobPath}?waitSeconds=30`, { headers });
    const invalid = await raw(t.server, "GET", `${jobPath}?waitSeconds=61`, { headers });

    expect(accepted.status).toBe(202);
    expect(ended.status).toBe(200);
    expect((ended.json.inventory as Vm).state).toBe("Running");
    expect(invalid.status).toBe(400);
    expect(JSON.stringify(invalid.json)).toContain("waitSeconds '61'");
  });

  it("injects, lists and deletes faults", async () => {
    const created = (
      await admin.call<{ inventory: Fault }>("createSimulatorFault", {
        params: {
          path: "/host/ping",
          resourceUuid: cloud.hostUuids[0],
          kind: "delay",
          delayMs: 10,
          count: 1000,
        },
      })
    ).inventory;
    const other = (
      await admin.call<{ inventory: Fault }>("createSimulatorFault", {
        params: { path: "/vm/stop", kind: "timeout" },
      })
    ).inventory;
    const listed = await admin.call<{ inventories: Fault[] }>("querySimulatorFault", {});

    await admin.call("deleteSimulatorFault", { path: { uuid: created.uuid } });
    const afterDelete = await admin.call<{ inventories: Fault[] }>("querySimulatorFault", {});
    await admin.call("deleteAllSimulatorFaults", {});
    const afterClear = await admin.call<{ inventories: Fault[] }>("querySimulatorFault", {});

    expect(created).toMatchObject({ kind: "delay", resourceUuid: cloud.hostUuids[0] });
    expect(listed.inventories.map((fault) => fault.uuid)).toEqual([created.uuid, other.uuid]);
    expect(afterDelete.inventories.map((fault) => fault.uuid)).toEqual([other.uuid]);
    expect(afterClear.inventories).toEqual([]);
  });

  it("rejects invalid faults", async () => {
    const unknownResource = await apiError(
      admin.call("createSimulatorFault", {
        params: { path: "*", kind: "host-down", resourceUuid: "0".repeat(32) },
      }),
    );
    const downOnOnePath = await apiError(
      admin.call("createSimulatorFault", { params: { path: "/vm/start", kind: "host-down" } }),
    );
    const missingText = await apiError(
      admin.call("createSimulatorFault", { params: { path: "/vm/start", kind: "fail" } }),
    );
    const missingFault = await apiError(
      admin.call("deleteSimulatorFault", { path: { uuid: "1".repeat(32) } }),
    );

    expect(unknownResource.details).toMatch(/resourceUuid/);
    expect(downOnOnePath.details).toMatch(/give \*/);
    expect(missingText.details).toMatch(/missing errorText/);
    expect(missingFault.details).toMatch(/was not found/);
  });

  it("denies faults to normal accounts", async () => {
    await admin.call("createAccount", {
      params: { name: "tsim-tenant", password: sha512Hex("tsim-tenant-pw") },
    });
    const tenant = t.client();
    await tenant.logInByAccount("tsim-tenant", "tsim-tenant-pw");

    const create = await apiError(
      tenant.call("createSimulatorFault", { params: { path: "*", kind: "timeout" } }),
    );
    const list = await apiError(tenant.call("querySimulatorFault", {}));

    expect(create.code).toBe("ID.1002");
    expect(list.code).toBe("ID.1002");
  });

  it("reports a failed console read as SYS.1006", async () => {
    const vm = await createVm("tsim-console");
    const running = await admin.call<{ console: string }>("getVmConsoleLog", {
      path: { uuid: vm.uuid },
    });
    expect(running.console).toContain("simulated console");

    await vmAction("stopVmInstance", vm.uuid);
    const stopped = await apiError(admin.call("getVmConsoleLog", { path: { uuid: vm.uuid } }));
    expect(stopped.code).toBe("SYS.1006");
    expect(stopped.details).toMatch(/failed to read the console log of VM \w+: .*not running/);

    await vmAction("destroyVmInstance", vm.uuid);
  });

  it("hides a tenant's image from others", async () => {
    const tenants: TstackClient[] = [];

    for (const name of ["tsim-owner", "tsim-other"]) {
      await admin.call("createAccount", {
        params: { name, password: sha512Hex(`${name}-pw`) },
      });
      const client = t.client();
      await client.logInByAccount(name, `${name}-pw`);
      tenants.push(client);
    }

    const [owner, other] = tenants as [TstackClient, TstackClient];
    const image = (
      await owner.call<{ inventory: { uuid: string } }>("addImage", {
        params: {
          name: "tsim-private",
          url: "http://192.0.2.10/images/private.qcow2",
          format: "qcow2",
          mediaType: "RootVolumeTemplate",
          backupStorageUuids: [cloud.backupStorageUuid],
        },
      })
    ).inventory;
    const seen = async (client: TstackClient) =>
      (await client.query<{ uuid: string }>("queryImage")).inventories.map((found) => found.uuid);

    expect(await seen(owner)).toContain(image.uuid);
    expect(await seen(owner)).toContain(cloud.imageUuid);
    expect(await seen(other)).not.toContain(image.uuid);
    expect(await seen(other)).toContain(cloud.imageUuid);
    expect(await seen(admin)).toContain(image.uuid);

    const byUuid = await other.call<{ inventories: unknown[] }>("queryImage", {
      path: { uuid: image.uuid },
    });
    expect(byUuid.inventories).toEqual([]);

    const boot = await apiError(
      other.call("createVmInstance", {
        params: {
          name: "tsim-borrowed",
          imageUuid: image.uuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
      }),
    );
    expect(boot.code).toBe("SYS.1007");
    expect(boot.details).toMatch(/params.imageUuid: image \w+ was not found/);

    const remove = await apiError(other.call("deleteImage", { path: { uuid: image.uuid } }));
    expect(remove.code).toBe("ID.1002");
    expect(remove.details).toMatch(/belongs to another account/);

    const sharedRemove = await apiError(
      other.call("deleteImage", { path: { uuid: cloud.imageUuid } }),
    );
    expect(sharedRemove.code).toBe("ID.1002");
    expect(sharedRemove.details).toMatch(/shared read-only/);

    await owner.call("deleteImage", { path: { uuid: image.uuid } });
  });

  it("forgets deleted simulator storage", async () => {
    const bs = (
      await admin.call<{ inventory: { uuid: string } }>("addSimulatorBackupStorage", {
        params: {
          name: "tsim-doomed",
          url: "/tsim/doomed",
          totalCapacity: GiB,
          availableCapacity: GiB,
        },
      })
    ).inventory;
    const registered = await simulatorState(bs.uuid);

    await admin.call("deleteBackupStorage", { path: { uuid: bs.uuid } });
    const left = await until(
      () => simulatorState(bs.uuid),
      (nodes) => nodes.length === 0,
      "the simulator forgetting the storage",
    );

    expect(registered.map((node) => node.kind)).toEqual(["backup"]);
    expect(left).toEqual([]);
  });

  it("creates 200 VMs on 50 hosts", async () => {
    const added = await pool(
      Array.from({ length: 47 }, (_, index) => index),
      10,
      async (index) =>
        (
          await admin.call<{ inventory: { uuid: string } }>("addSimulatorHost", {
            params: {
              name: `tsim-scale-${index}`,
              managementIp: `tsim-scale-${index}`,
              clusterUuid: cloud.clusterUuid,
              cpuCapacity: 16,
              memoryCapacity: 64 * GiB,
            },
          })
        ).inventory.uuid,
    );

    const vms = await pool(
      Array.from({ length: 200 }, (_, index) => index),
      50,
      (index) => createVm(`tsim-scale-vm-${index}`),
    );

    const notRunning = await admin.query<Vm>(
      "queryVmInstance",
      ["name~=tsim-scale-vm-%", "state!=Running"],
      { limit: 1000 },
    );
    const onSimulator = new Set(vmsOnSimulator(await simulatorState()));
    const usedHosts = new Set(vms.map((vm) => vm.hostUuid));
    expect(added).toHaveLength(47);
    expect(vms.map((vm) => vm.state)).toEqual(Array(200).fill("Running"));
    expect(notRunning.inventories.map((vm) => `${vm.uuid} is ${vm.state}`)).toEqual([]);
    expect(vms.filter((vm) => !onSimulator.has(vm.uuid))).toEqual([]);
    expect(usedHosts.size).toBeGreaterThan(1);
  }, 600_000);
});

describe("simulator host tracking", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildSimulatorCloud>>;

  beforeAll(async () => {
    // A changed ping interval applies at once, without waiting out the default 60 s.
    t = await startTestServer("sqlite");
    admin = t.admin;
    const settings: Array<[string, string]> = [
      ["ping.interval", "1"],
      ["ping.maxFailure", "1"],
      ["ping.timeout", "2"],
    ];

    for (const [name, value] of settings) {
      await admin.call("updateGlobalConfig", {
        path: { category: "host", name },
        params: { value },
      });
    }

    cloud = await buildSimulatorCloud(admin, {
      hosts: 3,
      cidr: "10.63.0.0/24",
      prefix: "tsimtrack",
    });
  });

  afterAll(async () => {
    await t?.stop();

    if (t) {
      rmSync(t.dataDir, { recursive: true, force: true });
    }
  });

  it("marks a down host Disconnected and back", async () => {
    const hostUuid = cloud.hostUuids[2]!;
    const status = async () =>
      (await admin.query<{ status: string }>("queryHost", [`uuid=${hostUuid}`])).inventories[0]
        ?.status;
    const fault = (
      await admin.call<{ inventory: Fault }>("createSimulatorFault", {
        params: { path: "*", resourceUuid: hostUuid, kind: "host-down" },
      })
    ).inventory;

    await until(status, (value) => value === "Disconnected", "the host becoming Disconnected");
    const others = await admin.query<{ status: string }>("queryHost", [`uuid!=${hostUuid}`]);
    await admin.call("deleteSimulatorFault", { path: { uuid: fault.uuid } });
    await until(status, (value) => value === "Connected", "the host reconnecting");

    expect(others.inventories.map((host) => host.status)).not.toContain("Disconnected");
  }, 120_000);
});

describe("simulator after a management node restart", () => {
  it("creates a VM from an older image", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "tstack-sim-restart-"));
    let t = await startTestServer("sqlite", { dataDir });

    try {
      await t.admin.call("updateGlobalConfig", {
        path: { category: "host", name: "ping.interval" },
        params: { value: "1" },
      });
      const cloud = await buildSimulatorCloud(t.admin, {
        hosts: 1,
        cidr: "10.64.0.0/24",
        prefix: "tsimrestart",
      });
      await addImageWithBrokenUrl(t, cloud.imageUuid);
      await t.stop();
      t = await startTestServer("sqlite", { dataDir, database: t.database });
      const hostStatus = async () =>
        (await t.admin.query<{ status: string }>("queryHost", [`uuid=${cloud.hostUuids[0]}`]))
          .inventories[0]?.status;
      await until(hostStatus, (status) => status === "Connected", "the host reconnecting");

      const vm = (
        await t.admin.call<{ inventory: Vm }>("createVmInstance", {
          params: {
            name: "after-restart",
            imageUuid: cloud.imageUuid,
            instanceOfferingUuid: cloud.instanceOfferingUuid,
            l3NetworkUuids: [cloud.l3NetworkUuid],
          },
        })
      ).inventory;
      expect(vm.state).toBe("Running");
    } finally {
      await t.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 180_000);
});

/**
 * Copies an image and its backup storage reference under a new uuid, with a URL that does not
 * parse, as a row written by hand or by an older version could have.
 */
async function addImageWithBrokenUrl(t: TestServer, imageUuid: string) {
  const db = t.server.core.kysely;
  const uuid = newUuid();
  const image = await db
    .selectFrom("images")
    .selectAll()
    .where("uuid", "=", imageUuid)
    .executeTakeFirstOrThrow();
  const ref = await db
    .selectFrom("imageBackupStorageRefs")
    .selectAll()
    .where("imageUuid", "=", imageUuid)
    .executeTakeFirstOrThrow();
  await db
    .insertInto("images")
    .values({ ...image, uuid, url: "not a url" })
    .execute();
  await db
    .insertInto("imageBackupStorageRefs")
    .values({ ...ref, imageUuid: uuid })
    .execute();
}
