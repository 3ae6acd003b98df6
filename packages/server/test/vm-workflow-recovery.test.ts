import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { simulatorLink } from "../src/simulator/link.js";
import { type TestServer, until } from "./harness.js";
import { type SimulatorCloud, startSimulatorCloud } from "./simulator-cloud.js";

type Vm = { uuid: string; state: string };

describe("VM workflow recovery", () => {
  let t: TestServer;
  let cloud: SimulatorCloud;

  beforeAll(async () => {
    ({ t, cloud } = await startSimulatorCloud({
      hosts: 1,
      cidr: "10.63.2.0/24",
      prefix: "tsimrecover",
    }));
  }, 120_000);

  afterAll(async () => {
    await t?.stop();
  });

  const createVm = async (name: string) =>
    (
      await t.admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name,
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
      })
    ).inventory;

  it("restores the state after a crash in the mark step", async () => {
    const core = t.server.core;

    // The data the API starts destroy-vm with, copied before the steps change it, as the
    // workflow row stores it before any step.
    const original = core.workflows.run.bind(core.workflows);
    let initial: Record<string, unknown> = {};
    const run = vi.spyOn(core.workflows, "run").mockImplementation((name, data, options) => {
      if (name === "destroy-vm") {
        initial = JSON.parse(JSON.stringify(data));
      }

      return original(name, data, options);
    });
    const first = await createVm("recover-first");
    await t.admin.call("destroyVmInstance", { path: { uuid: first.uuid } });
    run.mockRestore();

    // A node that died after the mark step committed Destroying but before the workflow row
    // recorded the step as done.
    const vm = await createVm("recover-second");
    await core.kysely
      .updateTable("vmInstances")
      .set({ state: "Destroying" })
      .where("uuid", "=", vm.uuid)
      .execute();
    const stamp = new Date().toISOString();
    await core.kysely
      .insertInto("workflows")
      .values({
        uuid: "f".repeat(32),
        name: "destroy-vm",
        jobUuid: null,
        state: "Running",
        data: JSON.stringify({ ...initial, vmUuid: vm.uuid, jobUuid: undefined }),
        completedSteps: 0,
        managementNodeUuid: "0".repeat(32),
        error: null,
        createDate: stamp,
        lastOpDate: stamp,
      })
      .execute();

    await core.workflows.recover();
    const after = await core.kysely
      .selectFrom("vmInstances")
      .select("state")
      .where("uuid", "=", vm.uuid)
      .executeTakeFirstOrThrow();

    expect(initial.fromState).toBe("Running");
    expect(after.state).toBe("Running");
  });

  it("keeps a refused rollback destroy and retries it", async () => {
    const core = t.server.core;
    const [hostUuid] = cloud.hostUuids;
    const simulatedVms = async () => {
      const { control } = await simulatorLink(core);
      const [host] = await control.state(hostUuid);
      return (host?.vms ?? []).map((vm) => vm.vmUuid);
    };
    const fault = (path: string, kind: string) =>
      t.admin.call("createSimulatorFault", {
        params: { path, kind, errorText: "injected destroy failure", count: 1 },
      });
    await fault("/vm/start", "drop-callback");
    const vmUuid = randomBytes(16).toString("hex");

    const accepted = await t.admin.call<{ location: string }>("createVmInstance", {
      params: {
        resourceUuid: vmUuid,
        name: "refused-undo",
        imageUuid: cloud.imageUuid,
        instanceOfferingUuid: cloud.instanceOfferingUuid,
        l3NetworkUuids: [cloud.l3NetworkUuid],
      },
      noWait: true,
    });
    const jobUuid = accepted.location.split("/api-jobs/")[1]!;
    await until(simulatedVms, (vms) => vms.includes(vmUuid), "VM start", 60_000);
    await fault("/vm/destroy", "fail");
    await t.admin.cancelJob(jobUuid);
    const failure = await t.admin.waitForJob(accepted.location).catch((error: Error) => error);

    // The job ends at the cancel; its rollback goes on in the background.
    const kept = await until(
      () => core.kysely.selectFrom("hostCleanups").selectAll().execute(),
      (rows) => rows.length > 0,
      "kept destroy",
      60_000,
    );
    expect(String(failure)).toMatch(/cancel/i);
    expect(kept.map((row) => [row.vmUuid, row.path])).toEqual([[vmUuid, "/vm/destroy"]]);
    expect(await simulatedVms()).toContain(vmUuid);

    await t.admin.call("reconnectHost", { path: { uuid: hostUuid! }, params: {} });

    expect(await simulatedVms()).not.toContain(vmUuid);
    expect(await core.kysely.selectFrom("hostCleanups").selectAll().execute()).toEqual([]);
  });

  it("keeps a refused rollback unplug", async () => {
    const core = t.server.core;
    const [hostUuid] = cloud.hostUuids;
    const vm = await createVm("refused-unplug");
    const other = await createVm("refused-unplug-other");
    const volume = (
      await t.admin.call<{ inventory: { uuid: string } }>("createDataVolume", {
        params: {
          name: "refused-unplug",
          diskSize: 32 * 1024 ** 2,
          primaryStorageUuid: cloud.primaryStorageUuid,
        },
      })
    ).inventory;
    const pluggedDisks = async (vmUuid: string) => {
      const { control } = await simulatorLink(core);
      const [host] = await control.state(hostUuid);
      return host?.vms.find((entry) => entry.vmUuid === vmUuid)?.disks ?? [];
    };
    const fault = (path: string, kind: string) =>
      t.admin.call("createSimulatorFault", {
        params: { path, kind, errorText: "injected unplug failure", count: 1 },
      });
    const attach = (vmUuid: string) =>
      t.admin.call("attachDataVolumeToVm", {
        path: { volumeUuid: volume.uuid, vmInstanceUuid: vmUuid },
        params: {},
      });

    // The disk goes in, its callback is lost, and the rollback of the cancel cannot unplug it.
    await fault("/vm/volume/attach", "drop-callback");
    const accepted = await t.admin.call<{ location: string }>("attachDataVolumeToVm", {
      path: { volumeUuid: volume.uuid, vmInstanceUuid: vm.uuid },
      params: {},
      noWait: true,
    });
    await until(
      () => pluggedDisks(vm.uuid),
      (disks) => disks.length > 1,
      "hotplug",
      60_000,
    );
    await fault("/vm/volume/detach", "fail");
    await t.admin.cancelJob(accepted.location.split("/api-jobs/")[1]!);
    const kept = await until(
      () => core.kysely.selectFrom("hostCleanups").selectAll().execute(),
      (rows) => rows.length > 0,
      "kept unplug",
      60_000,
    );

    expect(kept.map((row) => [row.vmUuid, row.path])).toEqual([[vm.uuid, "/vm/volume/detach"]]);
    expect(await pluggedDisks(vm.uuid)).toHaveLength(2);
    await expect(attach(other.uuid)).rejects.toThrow(/may still be plugged into VM/);

    await t.admin.call("reconnectHost", { path: { uuid: hostUuid! }, params: {} });

    expect(await pluggedDisks(vm.uuid)).toHaveLength(1);
    expect(await core.kysely.selectFrom("hostCleanups").selectAll().execute()).toEqual([]);
    await attach(other.uuid);
    expect(await pluggedDisks(other.uuid)).toHaveLength(2);
  });
});
