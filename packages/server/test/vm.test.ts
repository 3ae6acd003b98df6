import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runningAgentPid } from "../src/compute/hosts/local.js";
import { buildCloud } from "./cloud.js";
import { startTestServer, type TestServer } from "./harness.js";

type Vm = { uuid: string; state: string; hostUuid: string | null } & Record<string, unknown> & {
    rootVolumeUuid: string;
    vmNics: { ip: string }[];
    allVolumes: { uuid: string }[];
  };

/** Finds the QEMU process of a VM by its uuid on the command line. */
function qemuPid(vmUuid: string) {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }

    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");

      if (cmdline.startsWith("qemu-system") || cmdline.includes("/qemu-system")) {
        if (cmdline.includes(vmUuid)) {
          return Number(entry);
        }
      }
    } catch {
      // The process ended while we looked.
    }
  }

  return undefined;
}

function tapsOf(nicUuids: string[]) {
  const links = execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" });
  return nicUuids.filter((uuid) => links.includes(`tap${uuid.slice(0, 12)}`));
}

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
      throw new Error(
        `${what} did not happen within ${timeoutMs} ms; last value: ${JSON.stringify(value).slice(0, 2000)}`,
      );
    }

    await new Promise((resolve) => setTimeout(resolve, 500));
    value = await read();
  }

  return value;
}

describe("VM on real QEMU through the REST API", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;
  let vm: Vm;

  const getVm = async () =>
    (await admin.query<Vm>("queryVmInstance", [`uuid=${vm.uuid}`])).inventories[0]!;
  const consoleLog = async () =>
    (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid: vm.uuid } })).console;
  const memory = async () =>
    (
      await admin.call<{ availableMemory: number }>("getCpuMemoryCapacity", {
        query: { hostUuids: cloud.hostUuid },
      })
    ).availableMemory;

  beforeAll(async () => {
    t = await startTestServer("sqlite");
    admin = t.admin;
    cloud = await buildCloud(t, "172.30.77.0/24");
  }, 300_000);

  afterAll(async () => {
    const pid = vm ? qemuPid(vm.uuid) : undefined;

    if (pid) {
      process.kill(pid, "SIGKILL");
    }

    await cloud?.cleanup();
    await t?.stop();
  });

  it("creates a VM that boots, gets its DHCP address and runs its userdata", async () => {
    const before = await memory();
    const userdata = "#!/bin/sh\necho tstack-userdata-ran >/dev/console\n";
    vm = (
      await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name: "vm1",
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
        },
        systemTags: ["hostname::vm-one", `userdata::${Buffer.from(userdata).toString("base64")}`],
      })
    ).inventory;
    expect(vm.state).toBe("Running");
    expect(vm.hostUuid).toBe(cloud.hostUuid);
    expect(await memory()).toBe(before - 128 * 1024 * 1024);

    const nic = (await admin.query<{ ip: string }>("queryVmNic", [`vmInstanceUuid=${vm.uuid}`]))
      .inventories[0]!;
    expect(nic.ip).toMatch(/^172\.30\.77\.\d+$/);
    expect(vm.vmNics.map((vmNic) => vmNic.ip)).toEqual([nic.ip]);
    expect(vm.allVolumes.map((volume) => volume.uuid)).toEqual([vm.rootVolumeUuid]);

    const found = await admin.query<Vm>("queryVmInstance", [`vmNics.ip=${nic.ip}`]);
    expect(found.inventories.map((inventory) => inventory.uuid)).toEqual([vm.uuid]);

    const log = await until(
      consoleLog,
      (text) =>
        text.includes("TSTACK-GUEST: boot-ok") &&
        /TSTACK-GUEST: (ip=|dhcp-failed)/.test(text) &&
        /userdata-(ok|none|failed)/.test(text),
      "guest boot",
    );
    expect(log).toContain(`TSTACK-GUEST: ip=${nic.ip}`);
    expect(log, log).toContain("tstack-userdata-ran");
    expect(qemuPid(vm.uuid)).toBeGreaterThan(0);
  });

  it("rejects bad references before the job starts", async () => {
    const base = {
      name: "bad",
      imageUuid: cloud.imageUuid,
      instanceOfferingUuid: cloud.instanceOfferingUuid,
    };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...base, imageUuid: "b".repeat(32) }, /params.imageUuid: image b{32} was not found/],
      [
        { ...base, l3NetworkUuids: ["c".repeat(32)] },
        /params.l3NetworkUuids: L3 network c{32} was not found/,
      ],
      [{ ...base, cpuNum: 2 }, /not both/],
    ];

    for (const [params, message] of cases) {
      const error = await admin
        .call("createVmInstance", { params, noWait: true })
        .catch((failure: Error) => failure);
      expect(String((error as Error).message)).toMatch(message);
    }

    const withNic = { ...base, l3NetworkUuids: [cloud.l3NetworkUuid] };
    const tagCases: Array<[string[], RegExp]> = [
      [["userdata::!!!not base64"], /userdata must be base64-encoded/],
      [
        ["bootMode::UEFI"],
        /'bootMode::UEFI' is not a VM system tag tstack supports; use hostname::/,
      ],
      [["hostname::a", "hostname::b"], /'hostname' is given more than once/],
      [["hostname::VM-ONE"], /hostname 'VM-ONE' is already used by VM [0-9a-f]{32} on L3 network/],
    ];

    for (const [systemTags, message] of tagCases) {
      const error = await admin
        .call("createVmInstance", { params: withNic, systemTags, noWait: true })
        .catch((failure: Error) => failure);
      expect(String((error as Error).message)).toMatch(message);
    }

    expect((await admin.query("queryVmInstance", ["name=bad"])).inventories).toEqual([]);
  });

  it("stops gracefully and returns the capacity, then starts again", async () => {
    const running = await memory();
    vm = (
      await admin.call<{ inventory: Vm }>("stopVmInstance", {
        path: { uuid: vm.uuid },
        params: { type: "grace" },
      })
    ).inventory;
    expect(vm.state).toBe("Stopped");
    expect(vm.hostUuid).toBeNull();
    expect(qemuPid(vm.uuid)).toBeUndefined();
    expect(await memory()).toBe(running + 128 * 1024 * 1024);

    vm = (
      await admin.call<{ inventory: Vm }>("startVmInstance", {
        path: { uuid: vm.uuid },
        params: {},
      })
    ).inventory;
    expect(vm.state).toBe("Running");
    await until(consoleLog, (text) => text.includes("TSTACK-GUEST: boot-ok"), "boot after start");
  });

  it("reboots, pauses and resumes", async () => {
    vm = (
      await admin.call<{ inventory: Vm }>("rebootVmInstance", {
        path: { uuid: vm.uuid },
        params: {},
      })
    ).inventory;
    expect(vm.state).toBe("Running");
    vm = (
      await admin.call<{ inventory: Vm }>("pauseVmInstance", {
        path: { uuid: vm.uuid },
        params: {},
      })
    ).inventory;
    expect(vm.state).toBe("Paused");
    const error = await admin
      .call("rebootVmInstance", { path: { uuid: vm.uuid }, params: {} })
      .catch((failure: Error) => failure);
    expect(String((error as Error).message)).toMatch(
      /in state Paused; allowed in this state: .*resumeVmInstance/,
    );
    vm = (
      await admin.call<{ inventory: Vm }>("resumeVmInstance", {
        path: { uuid: vm.uuid },
        params: {},
      })
    ).inventory;
    expect(vm.state).toBe("Running");
  });

  it("notices QEMU killed behind the agent's back", async () => {
    const pid = qemuPid(vm.uuid)!;
    process.kill(pid, "SIGKILL");
    const after = await until(
      getVm,
      (found) => found.state === "Stopped" || found.state === "Crashed",
      "the VM leaving Running",
    );
    expect(after.hostUuid).toBeNull();

    vm = (
      await admin.call<{ inventory: Vm }>("startVmInstance", {
        path: { uuid: vm.uuid },
        params: {},
      })
    ).inventory;
    expect(vm.state).toBe("Running");
  });

  it("keeps the VM running and tracked across an agent restart", async () => {
    const qemu = qemuPid(vm.uuid)!;
    process.kill(runningAgentPid(cloud.agentDir)!, "SIGKILL");
    await admin.call("reconnectHost", { path: { uuid: cloud.hostUuid }, params: {} });
    expect(qemuPid(vm.uuid)).toBe(qemu);
    expect((await getVm()).state).toBe("Running");

    vm = (
      await admin.call<{ inventory: Vm }>("stopVmInstance", {
        path: { uuid: vm.uuid },
        params: { type: "cold" },
      })
    ).inventory;
    expect(vm.state).toBe("Stopped");
  });

  it("rolls a failed start back completely", async () => {
    const free = await memory();
    process.kill(runningAgentPid(cloud.agentDir)!, "SIGKILL");
    const error = await admin
      .call("startVmInstance", { path: { uuid: vm.uuid }, params: {} })
      .catch((failure: Error) => failure);
    expect(String((error as Error).message)).toMatch(/rolled back|failed to reach the agent/);
    const after = await getVm();
    expect(after.state).toBe("Stopped");
    expect(after.hostUuid).toBeNull();
    expect(await memory()).toBe(free);
    await admin.call("reconnectHost", { path: { uuid: cloud.hostUuid }, params: {} });
  });

  it("stops VMs for host maintenance or rejects it", async () => {
    vm = (
      await admin.call<{ inventory: Vm }>("startVmInstance", {
        path: { uuid: vm.uuid },
        params: {},
      })
    ).inventory;
    // The guest must have booted to act on the ACPI power button of a graceful stop.
    await until(
      consoleLog,
      (text) =>
        (text.match(/TSTACK-GUEST: boot-ok/g) ?? []).length > 0 &&
        text.trimEnd().endsWith("userdata-ok"),
      "boot before maintenance",
    );
    await admin.call("updateGlobalConfig", {
      path: { category: "host", name: "maintenance.policy" },
      params: { value: "RejectWithRunningVm" },
    });
    const error = await admin
      .call("changeHostState", {
        path: { uuid: cloud.hostUuid },
        params: { stateEvent: "maintain" },
      })
      .catch((failure: Error) => failure);
    expect(String((error as Error).message)).toContain(`still runs 1 VM(s): vm1 (${vm.uuid})`);
    expect((await getVm()).state).toBe("Running");

    await admin.call("updateGlobalConfig", {
      path: { category: "host", name: "maintenance.policy" },
      params: { value: "StopVm" },
    });
    const host = (
      await admin.call<{ inventory: { state: string } }>("changeHostState", {
        path: { uuid: cloud.hostUuid },
        params: { stateEvent: "maintain" },
      })
    ).inventory;
    expect(host.state).toBe("Maintenance");
    expect((await getVm()).state).toBe("Stopped");

    const refused = await admin
      .call("startVmInstance", { path: { uuid: vm.uuid }, params: {} })
      .catch((failure: Error) => failure);
    expect(String((refused as Error).message)).toMatch(/state Maintenance/);
    await admin.call("changeHostState", {
      path: { uuid: cloud.hostUuid },
      params: { stateEvent: "enable" },
    });
  });

  it("refuses to delete a host or zone in use", async () => {
    const host = await admin
      .call("deleteHost", { path: { uuid: cloud.hostUuid } })
      .catch((failure: Error) => failure);
    expect(String((host as Error).message)).toMatch(/holds backup storage/);
    const zone = await admin
      .call("deleteZone", { path: { uuid: cloud.zoneUuid }, query: { deleteMode: "Enforcing" } })
      .catch((failure: Error) => failure);
    expect(String((zone as Error).message)).toMatch(/still has host .*delete them first/);
    expect((await admin.query("queryHost", [`uuid=${cloud.hostUuid}`])).inventories).toHaveLength(
      1,
    );
  });

  it("creates a stopped VM and changes its offering", async () => {
    const free = await memory();
    const stopped = (
      await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name: "vm2",
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          strategy: "CreateStopped",
        },
      })
    ).inventory;
    expect(stopped.state).toBe("Stopped");
    expect(stopped.hostUuid).toBeNull();
    expect(qemuPid(stopped.uuid)).toBeUndefined();
    expect(await memory()).toBe(free);

    const bigger = (
      await admin.call<{ inventory: { uuid: string } }>("createInstanceOffering", {
        params: { name: "bigger", cpuNum: 1, memorySize: 192 * 1024 * 1024 },
      })
    ).inventory;
    const changed = (
      await admin.call<{ inventory: Vm }>("changeInstanceOffering", {
        path: { uuid: stopped.uuid },
        params: { instanceOfferingUuid: bigger.uuid },
      })
    ).inventory;
    expect(changed.memorySize).toBe(192 * 1024 * 1024);

    const started = (
      await admin.call<{ inventory: Vm }>("startVmInstance", {
        path: { uuid: stopped.uuid },
        params: {},
      })
    ).inventory;
    expect(started.state).toBe("Running");
    expect(await memory()).toBe(free - 192 * 1024 * 1024);

    await admin.call("destroyVmInstance", { path: { uuid: stopped.uuid } });
    await admin.call("expungeVmInstance", { path: { uuid: stopped.uuid }, params: {} });
    expect(await memory()).toBe(free);
  });

  it("JustCreate allocates at first start", async () => {
    const free = await memory();
    const created = (
      await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name: "vm3",
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
          strategy: "JustCreate",
        },
      })
    ).inventory;
    expect(created).toMatchObject({ state: "Created", hostUuid: null, rootVolumeUuid: null });
    expect(created.vmNics).toEqual([]);
    expect(created.allVolumes).toEqual([]);
    expect(await memory()).toBe(free);

    const started = (
      await admin.call<{ inventory: Vm }>("startVmInstance", {
        path: { uuid: created.uuid },
        params: {},
      })
    ).inventory;
    expect(started.state).toBe("Running");
    expect(started.rootVolumeUuid).toMatch(/^[0-9a-f]{32}$/);
    expect(started.vmNics[0]?.ip).toMatch(/^172\.30\.77\.\d+$/);
    expect(qemuPid(created.uuid)).toBeGreaterThan(0);
    expect(await memory()).toBe(free - 128 * 1024 * 1024);

    // A second start reuses the root volume and NIC of the first.
    await admin.call("stopVmInstance", { path: { uuid: created.uuid }, params: { type: "cold" } });
    const again = (
      await admin.call<{ inventory: Vm }>("startVmInstance", {
        path: { uuid: created.uuid },
        params: {},
      })
    ).inventory;
    expect(again.rootVolumeUuid).toBe(started.rootVolumeUuid);
    expect(again.allVolumes.map((volume) => volume.uuid)).toEqual([started.rootVolumeUuid]);
    expect(again.vmNics.map((nic) => nic.ip)).toEqual([started.vmNics[0]!.ip]);

    await admin.call("destroyVmInstance", { path: { uuid: created.uuid } });
    await admin.call("expungeVmInstance", { path: { uuid: created.uuid }, params: {} });
    expect(await memory()).toBe(free);
  });

  it("recovers a never-started VM to Created", async () => {
    const created = (
      await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name: "vm4",
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          strategy: "JustCreate",
        },
      })
    ).inventory;
    await admin.call("destroyVmInstance", { path: { uuid: created.uuid } });

    const recovered = (
      await admin.call<{ inventory: Vm }>("recoverVmInstance", {
        path: { uuid: created.uuid },
        params: {},
      })
    ).inventory;
    expect(recovered.state).toBe("Created");

    await admin.call("destroyVmInstance", { path: { uuid: created.uuid } });
    await admin.call("expungeVmInstance", { path: { uuid: created.uuid }, params: {} });
    const specs = await t.server.core.kysely
      .selectFrom("vmCreationSpecs")
      .selectAll()
      .where("vmInstanceUuid", "=", created.uuid)
      .execute();
    expect(specs).toEqual([]);
  });

  it("destroys, recovers and expunges, leaving nothing behind", async () => {
    const nics = (
      await admin.query<{ uuid: string }>("queryVmNic", [`vmInstanceUuid=${vm.uuid}`])
    ).inventories.map((nic) => nic.uuid);
    vm = (
      await admin.call<{ inventory: Vm }>("startVmInstance", {
        path: { uuid: vm.uuid },
        params: {},
      })
    ).inventory;
    expect(tapsOf(nics)).toHaveLength(1);

    await admin.call("destroyVmInstance", { path: { uuid: vm.uuid } });
    expect((await getVm()).state).toBe("Destroyed");
    expect(qemuPid(vm.uuid)).toBeUndefined();
    expect(tapsOf(nics)).toHaveLength(0);

    vm = (
      await admin.call<{ inventory: Vm }>("recoverVmInstance", {
        path: { uuid: vm.uuid },
        params: {},
      })
    ).inventory;
    expect(vm.state).toBe("Stopped");
    await admin.call("destroyVmInstance", { path: { uuid: vm.uuid } });
    await admin.call("expungeVmInstance", { path: { uuid: vm.uuid }, params: {} });

    expect((await admin.query("queryVmInstance", [`uuid=${vm.uuid}`])).inventories).toEqual([]);
    expect((await admin.query("queryVmNic", [`vmInstanceUuid=${vm.uuid}`])).inventories).toEqual(
      [],
    );
    const capacity = await admin.call<{ availableMemory: number; totalMemory: number }>(
      "getCpuMemoryCapacity",
      { query: { hostUuids: cloud.hostUuid } },
    );
    expect(capacity.availableMemory).toBe(capacity.totalMemory);
  });
});
