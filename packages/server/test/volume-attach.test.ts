import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCloud, serveFile } from "./cloud.js";
import { startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };
type Volume = Inventory & {
  status: string;
  installPath: string | null;
  size: number;
  vmInstanceUuid: string | null;
  deviceId: number | null;
  primaryStorageUuid: string | null;
};
type Vm = Inventory & { state: string; rootVolumeUuid: string };

const MiB = 1024 * 1024;
const SECTOR = 512;

/**
 * Guest userdata that prints the virtio disks and their sizes in 512-byte sectors on the console
 * whenever they change, as `TVOL-BLOCK: vda:150528 vdb:131072`.
 */
const BLOCK_WATCHER = `#!/bin/sh
(
  last=""
  while true; do
    now=""
    for disk in /sys/block/vd*; do
      [ -e "$disk" ] && now="$now $(basename "$disk"):$(cat "$disk/size")"
    done
    if [ "$now" != "$last" ]; then
      echo "TVOL-BLOCK:$now" >/dev/console
      last="$now"
    fi
    sleep 1
  done
) >/dev/null 2>&1 &
`;

async function failure(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    return error as Error & { status?: number };
  }

  throw new Error("expected the call to fail");
}

async function until<T>(read: () => Promise<T>, accept: (value: T) => boolean, what: string) {
  const deadline = Date.now() + 120_000;
  let value = await read();

  while (!accept(value)) {
    if (Date.now() > deadline) {
      throw new Error(`${what} did not happen; last value: ${String(value).slice(-2000)}`);
    }

    await new Promise((resolve) => setTimeout(resolve, 500));
    value = await read();
  }

  return value;
}

function virtualSize(path: string) {
  const output = execFileSync("qemu-img", ["info", "-U", "--output=json", path], {
    encoding: "utf8",
  });
  return (JSON.parse(output) as { "virtual-size": number })["virtual-size"];
}

/** Parses the disks the guest listed last, such as `{vda: 150528, vdb: 131072}`, in sectors. */
function lastBlockLine(console: string) {
  const lines = console.split("\n").filter((line) => line.includes("TVOL-BLOCK:"));
  const last = lines.at(-1)?.split("TVOL-BLOCK:")[1]?.trim() ?? "";
  const disks: Record<string, number> = {};

  for (const entry of last.split(" ").filter(Boolean)) {
    const [name, sectors] = entry.split(":");
    disks[name!] = Number(sectors);
  }

  return disks;
}

/** Finds the QEMU process of a VM by its uuid on the command line. */
function qemuPid(vmUuid: string) {
  for (const entry of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");

      if (cmdline.includes("qemu-system") && cmdline.includes(vmUuid)) {
        return Number(entry);
      }
    } catch {
      // The process ended while we looked.
    }
  }

  return undefined;
}

/** Lists the files a VM's QEMU process has open, which include its CD-ROM medium. */
function openFiles(vmUuid: string) {
  const pid = qemuPid(vmUuid);

  if (!pid) {
    return [];
  }

  return readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return "";
    }
  });
}

describe("data volume attach, detach and resize on real QEMU", () => {
  let t: TestServer;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;
  let running: Vm;
  let stopped: Vm;
  const extraDirs: string[] = [];

  const volume = async (uuid: string) =>
    (await admin.query<Volume>("queryVolume", [`uuid=${uuid}`])).inventories[0]!;
  const capacity = async () =>
    (
      await admin.query<Inventory & { availableCapacity: number }>("queryPrimaryStorage", [
        `uuid=${cloud.primaryStorageUuid}`,
      ])
    ).inventories[0]!.availableCapacity;
  const guestDisks = async (vmUuid: string) =>
    lastBlockLine(
      (await admin.call<{ console: string }>("getVmConsoleLog", { path: { uuid: vmUuid } }))
        .console,
    );
  const createVolume = async (name: string, size: number, primaryStorageUuid?: string) =>
    (
      await admin.call<{ inventory: Volume }>("createDataVolume", {
        params: { name, diskSize: size, primaryStorageUuid },
      })
    ).inventory;
  const attach = (volumeUuid: string, vmInstanceUuid: string) =>
    admin.call<{ inventory: Volume }>("attachDataVolumeToVm", {
      path: { volumeUuid, vmInstanceUuid },
      params: {},
    });
  const detach = (uuid: string, vmUuid?: string) =>
    admin.call<{ inventory: Volume }>("detachDataVolumeFromVm", {
      path: { uuid },
      query: vmUuid ? { vmUuid } : {},
    });
  const createVm = async (name: string, strategy: string) =>
    (
      await admin.call<{ inventory: Vm }>("createVmInstance", {
        params: {
          name,
          imageUuid: cloud.imageUuid,
          instanceOfferingUuid: cloud.instanceOfferingUuid,
          l3NetworkUuids: [cloud.l3NetworkUuid],
          strategy,
        },
        systemTags: [`userdata::${Buffer.from(BLOCK_WATCHER).toString("base64")}`],
      })
    ).inventory;

  beforeAll(async () => {
    t = await startTestServer("sqlite");
    admin = t.admin;
    cloud = await buildCloud(t, "172.30.94.0/24");
    running = await createVm("tvol-running", "InstantStart");
    stopped = await createVm("tvol-stopped", "CreateStopped");
    await until(
      () => guestDisks(running.uuid),
      (disks) => disks.vda! > 0,
      "guest disk listing",
    );
  }, 300_000);

  afterAll(async () => {
    await cloud?.cleanup();
    await t?.stop();

    for (const dir of extraDirs) {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("hotplugs, grows and unplugs a volume", { timeout: 300_000 }, async () => {
    const before = await capacity();
    const created = await createVolume("tvol-hot", 64 * MiB);
    expect(created.status).toBe("NotInstantiated");

    const attachStarted = performance.now();
    const attached = (await attach(created.uuid, running.uuid)).inventory;
    const attachMs = performance.now() - attachStarted;
    expect(attached.status).toBe("Ready");
    expect(attached.vmInstanceUuid).toBe(running.uuid);
    expect(attached.deviceId).toBe(1);
    expect(attached.primaryStorageUuid).toBe(cloud.primaryStorageUuid);
    expect(existsSync(attached.installPath!)).toBe(true);
    expect(await capacity()).toBeLessThan(before);
    const vm = (
      await admin.query<Vm & { allVolumes: Volume[] }>("queryVmInstance", [`uuid=${running.uuid}`])
    ).inventories[0]!;
    expect(vm.allVolumes.map((listed) => [listed.uuid, listed.deviceId])).toEqual([
      [running.rootVolumeUuid, 0],
      [created.uuid, 1],
    ]);
    await until(
      () => guestDisks(running.uuid),
      (disks) => disks.vdb === (64 * MiB) / SECTOR,
      "vdb in the guest",
    );

    const grown = (
      await admin.call<{ inventory: Volume }>("resizeDataVolume", {
        path: { uuid: created.uuid },
        params: { size: 96 * MiB },
      })
    ).inventory;
    expect(grown.size).toBe(96 * MiB);
    expect(virtualSize(attached.installPath!)).toBe(96 * MiB);
    await until(
      () => guestDisks(running.uuid),
      (disks) => disks.vdb === (96 * MiB) / SECTOR,
      "vdb grown in the guest",
    );

    const detachStarted = performance.now();
    const detached = (await detach(created.uuid, running.uuid)).inventory;
    const detachMs = performance.now() - detachStarted;
    // Reported, not asserted: timings depend on the machine's load.
    console.log(
      `hot attach with file creation ${attachMs.toFixed(0)} ms, hot detach ${detachMs.toFixed(0)} ms`,
    );
    expect(detached.vmInstanceUuid).toBeNull();
    expect(detached.deviceId).toBeNull();
    expect(detached.status).toBe("Ready");
    await until(
      () => guestDisks(running.uuid),
      (disks) => disks.vdb === undefined && disks.vda! > 0,
      "vdb gone from the guest",
    );

    await admin.call("deleteDataVolume", { path: { uuid: created.uuid } });
    await admin.call("expungeDataVolume", { path: { uuid: created.uuid }, params: {} });
    expect(await capacity()).toBe(before);
  });

  it("grows a running VM's root volume", { timeout: 120_000 }, async () => {
    const root = await volume(running.rootVolumeUuid);
    const size = root.size + 32 * MiB;

    const grown = (
      await admin.call<{ inventory: Volume }>("resizeRootVolume", {
        path: { uuid: root.uuid },
        params: { size },
      })
    ).inventory;
    expect(grown.size).toBe(size);
    expect(virtualSize(root.installPath!)).toBe(size);
    await until(
      () => guestDisks(running.uuid),
      (disks) => disks.vda === size / SECTOR,
      "vda grown in the guest",
    );
  });

  it("attaches to a stopped VM for its next start", { timeout: 300_000 }, async () => {
    const created = await createVolume("tvol-cold", 32 * MiB, cloud.primaryStorageUuid);
    const attached = (await attach(created.uuid, stopped.uuid)).inventory;
    expect(attached.vmInstanceUuid).toBe(stopped.uuid);
    expect(attached.deviceId).toBe(1);

    const root = await volume(stopped.rootVolumeUuid);
    const rootSize = root.size + 16 * MiB;
    await admin.call("resizeRootVolume", {
      path: { uuid: root.uuid },
      params: { size: rootSize },
    });
    expect(virtualSize(root.installPath!)).toBe(rootSize);
    await admin.call("resizeDataVolume", {
      path: { uuid: created.uuid },
      params: { size: 48 * MiB },
    });
    expect(virtualSize(created.installPath!)).toBe(48 * MiB);

    await admin.call("startVmInstance", { path: { uuid: stopped.uuid }, params: {} });
    const disks = await until(
      () => guestDisks(stopped.uuid),
      (listed) => listed.vdb !== undefined,
      "vdb in the started guest",
    );
    expect(disks.vdb).toBe((48 * MiB) / SECTOR);
    expect(disks.vda).toBe(rootSize / SECTOR);

    await admin.call("stopVmInstance", { path: { uuid: stopped.uuid }, params: { type: "cold" } });
    const detached = (await detach(created.uuid)).inventory;
    expect(detached.vmInstanceUuid).toBeNull();
  });

  it("rolls back a failed hotplug", { timeout: 120_000 }, async () => {
    const created = await createVolume("tvol-broken", 16 * MiB, cloud.primaryStorageUuid);
    writeFileSync(created.installPath!, "not a qcow2 image");

    const error = await failure(attach(created.uuid, running.uuid));
    expect(error.message).toMatch(/failed to hotplug volume/);
    expect(error.message).toMatch(/rolled back/);

    const after = await volume(created.uuid);
    expect(after.status).toBe("Ready");
    expect(after.vmInstanceUuid).toBeNull();
    expect(after.deviceId).toBeNull();
  });

  it("rolls back instantiating a volume", { timeout: 120_000 }, async () => {
    const before = await capacity();
    const created = await createVolume("tvol-blocked", 16 * MiB);
    const sibling = await createVolume("tvol-sibling", 16 * MiB, cloud.primaryStorageUuid);

    // A plain file where the volume's directory goes makes the file creation fail.
    const accountDir = dirname(dirname(sibling.installPath!));
    writeFileSync(join(accountDir, `vol-${created.uuid}`), "");
    const reserved = await capacity();

    const error = await failure(attach(created.uuid, running.uuid));
    expect(error.message).toMatch(/failed to create the file of volume/);
    expect(error.message).toMatch(/rolled back/);

    const after = await volume(created.uuid);
    expect(after.status).toBe("NotInstantiated");
    expect(after.primaryStorageUuid).toBeNull();
    expect(after.vmInstanceUuid).toBeNull();
    expect(await capacity()).toBe(reserved);
    expect(existsSync(join(accountDir, `vol-${created.uuid}`))).toBe(false);

    for (const uuid of [created.uuid, sibling.uuid]) {
      await admin.call("deleteDataVolume", { path: { uuid } });
      await admin.call("expungeDataVolume", { path: { uuid }, params: {} });
    }

    expect(await capacity()).toBe(before);
  });

  it("rejects invalid attaches", { timeout: 120_000 }, async () => {
    const root = await failure(attach(running.rootVolumeUuid, stopped.uuid));
    expect(root.status).toBe(400);
    expect(root.message).toMatch(/is a Root volume; only data volumes attach/);

    const data = await createVolume("tvol-rules", 16 * MiB);
    await attach(data.uuid, stopped.uuid);
    const twice = await failure(attach(data.uuid, running.uuid));
    expect(twice.status).toBe(409);
    expect(twice.message).toMatch(/already attached to VM \w+; detach it first/);

    const wrongVm = await failure(detach(data.uuid, running.uuid));
    expect(wrongVm.status).toBe(400);
    expect(wrongVm.message).toMatch(/it is attached to VM/);
    await detach(data.uuid, stopped.uuid);

    const notAttached = await failure(detach(data.uuid));
    expect(notAttached.status).toBe(409);
    expect(notAttached.message).toMatch(/not attached to a VM/);

    await admin.call("changeVolumeState", {
      path: { uuid: data.uuid },
      params: { stateEvent: "disable" },
    });
    const disabled = await failure(attach(data.uuid, running.uuid));
    expect(disabled.status).toBe(409);
    expect(disabled.message).toMatch(/it is Disabled; enable it first/);
    await admin.call("changeVolumeState", {
      path: { uuid: data.uuid },
      params: { stateEvent: "enable" },
    });

    await admin.call("deleteDataVolume", { path: { uuid: data.uuid } });
    const deleted = await failure(attach(data.uuid, running.uuid));
    expect(deleted.status).toBe(409);
    expect(deleted.message).toMatch(/status is Deleted, expected Ready or NotInstantiated/);

    await admin.call("pauseVmInstance", { path: { uuid: running.uuid }, params: {} });
    const fresh = await createVolume("tvol-paused", 16 * MiB);
    const paused = await failure(attach(fresh.uuid, running.uuid));
    expect(paused.status).toBe(409);
    expect(paused.message).toMatch(/the VM is Paused; volumes attach to Running or Stopped VMs/);
    await admin.call("resumeVmInstance", { path: { uuid: running.uuid }, params: {} });
  });

  it("limits data volumes per VM", { timeout: 300_000 }, async () => {
    const attached: string[] = [];

    for (let index = 0; index < 15; index++) {
      const data = await createVolume(`tvol-many-${index}`, 4 * MiB);
      const inventory = (await attach(data.uuid, stopped.uuid)).inventory;
      expect(inventory.deviceId).toBe(index + 1);
      attached.push(data.uuid);
    }

    const extra = await createVolume("tvol-one-too-many", 4 * MiB);
    const error = await failure(attach(extra.uuid, stopped.uuid));
    expect(error.status).toBe(409);
    expect(error.message).toMatch(/already has 15 data volumes, the maximum; detach one first/);

    // The freed device number is the next one handed out.
    await detach(attached[4]!);
    expect((await attach(extra.uuid, stopped.uuid)).inventory.deviceId).toBe(5);

    for (const uuid of [...attached, extra.uuid]) {
      if (uuid !== attached[4]) {
        await detach(uuid);
      }

      await admin.call("deleteDataVolume", { path: { uuid } });
      await admin.call("expungeDataVolume", { path: { uuid }, params: {} });
    }
  });

  it("rejects a volume on another primary storage", { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tvol-ps-"));
    extraDirs.push(dir);
    const other = (
      await admin.call<{ inventory: Inventory }>("addLocalPrimaryStorage", {
        params: { name: "tvol-other", url: join(dir, "primary"), zoneUuid: cloud.zoneUuid },
      })
    ).inventory;
    await admin.call("attachPrimaryStorageToCluster", {
      path: { clusterUuid: cloud.clusterUuid, primaryStorageUuid: other.uuid },
    });
    const elsewhere = await createVolume("tvol-elsewhere", 16 * MiB, other.uuid);

    const error = await failure(attach(elsewhere.uuid, running.uuid));
    expect(error.status).toBe(400);
    expect(error.message).toMatch(/attaches only to VMs on its primary storage/);

    const candidates = await admin.call<{ inventories: Inventory[] }>("getDataVolumeAttachableVm", {
      path: { volumeUuid: elsewhere.uuid },
    });
    expect(candidates.inventories).toEqual([]);
    const fresh = await createVolume("tvol-candidate", 16 * MiB);
    const fits = await admin.call<{ inventories: Inventory[] }>("getDataVolumeAttachableVm", {
      path: { volumeUuid: fresh.uuid },
    });
    expect(fits.inventories.map((vm) => vm.uuid).sort()).toEqual(
      [running.uuid, stopped.uuid].sort(),
    );
    const volumes = await admin.call<{ inventories: Inventory[] }>("getVmAttachableDataVolume", {
      path: { vmInstanceUuid: running.uuid },
    });
    const uuids = volumes.inventories.map((listed) => listed.uuid);
    expect(uuids).toContain(fresh.uuid);
    expect(uuids).not.toContain(elsewhere.uuid);

    await admin.call("deleteDataVolume", { path: { uuid: elsewhere.uuid } });
    await admin.call("expungeDataVolume", { path: { uuid: elsewhere.uuid }, params: {} });
    await admin.call("detachPrimaryStorageFromCluster", {
      path: { clusterUuid: cloud.clusterUuid, primaryStorageUuid: other.uuid },
    });
    await admin.call("deletePrimaryStorage", { path: { uuid: other.uuid } });
  });

  it("rejects a shrink and a resize beyond capacity", { timeout: 120_000 }, async () => {
    const data = await createVolume("tvol-size", 32 * MiB, cloud.primaryStorageUuid);
    const before = await capacity();

    const shrink = await failure(
      admin.call("resizeDataVolume", { path: { uuid: data.uuid }, params: { size: 16 * MiB } }),
    );
    expect(shrink.status).toBe(400);
    expect(shrink.message).toMatch(/is not larger than the current 33554432 bytes/);

    const huge = await failure(
      admin.call("resizeDataVolume", { path: { uuid: data.uuid }, params: { size: 1024 ** 5 } }),
    );
    expect(huge.status).toBe(400);
    expect(huge.message).toMatch(/has not \d+ more bytes free/);
    expect((await volume(data.uuid)).size).toBe(32 * MiB);
    expect(virtualSize(data.installPath!)).toBe(32 * MiB);
    expect(await capacity()).toBe(before);

    const wrongKind = await failure(
      admin.call("resizeRootVolume", { path: { uuid: data.uuid }, params: { size: 64 * MiB } }),
    );
    expect(wrongKind.status).toBe(400);
    expect(wrongKind.message).toMatch(/is a Data volume; use resizeDataVolume/);
  });

  it("attaches and detaches an ISO", { timeout: 300_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tvol-iso-"));
    extraDirs.push(dir);
    mkdirSync(join(dir, "content"));
    writeFileSync(join(dir, "content", "hello.txt"), "tvol\n");
    execFileSync("genisoimage", [
      "-quiet",
      "-o",
      join(dir, "tvol.iso"),
      "-V",
      "TVOL",
      "-J",
      "-r",
      join(dir, "content"),
    ]);
    const bs = (await admin.query<Inventory>("queryBackupStorage")).inventories[0]!;
    const served = await serveFile(join(dir, "tvol.iso"));
    const iso = (
      await admin.call<{ inventory: Inventory }>("addImage", {
        params: {
          name: "tvol-iso",
          url: served.url,
          format: "iso",
          mediaType: "ISO",
          backupStorageUuids: [bs.uuid],
        },
      })
    ).inventory;
    await served.close();

    const template = await failure(
      admin.call("attachIsoToVmInstance", {
        path: { vmInstanceUuid: running.uuid, isoUuid: cloud.imageUuid },
        params: {},
      }),
    );
    expect(template.status).toBe(400);
    expect(template.message).toMatch(/only ISO images attach as a CD-ROM/);

    const candidates = async () =>
      (
        await admin.call<{ inventories: Inventory[] }>("getCandidateVmForAttachingIso", {
          path: { isoUuid: iso.uuid },
        })
      ).inventories
        .map((vm) => vm.uuid)
        .sort();
    expect(await candidates()).toEqual([running.uuid, stopped.uuid].sort());

    type WithCdRoms = Vm & { vmCdRoms: { isoUuid: string; isoInstallPath: string }[] };
    const attached = (
      await admin.call<{ inventory: WithCdRoms }>("attachIsoToVmInstance", {
        path: { vmInstanceUuid: running.uuid, isoUuid: iso.uuid },
        params: {},
      })
    ).inventory;
    expect(attached.vmCdRoms.map((cdrom) => cdrom.isoUuid)).toEqual([iso.uuid]);
    const cached = attached.vmCdRoms[0]!.isoInstallPath;
    expect(existsSync(cached)).toBe(true);
    expect(openFiles(running.uuid)).toContain(cached);
    expect(await candidates()).toEqual([stopped.uuid]);

    const twice = await failure(
      admin.call("attachIsoToVmInstance", {
        path: { vmInstanceUuid: running.uuid, isoUuid: iso.uuid },
        params: {},
      }),
    );
    expect(twice.status).toBe(409);
    expect(twice.message).toMatch(/detach it first/);

    const detached = (
      await admin.call<{ inventory: WithCdRoms }>("detachIsoFromVmInstance", {
        path: { vmInstanceUuid: running.uuid },
      })
    ).inventory;
    expect(detached.vmCdRoms).toEqual([]);
    expect(openFiles(running.uuid)).not.toContain(cached);

    // A stopped VM gets the ISO once it runs again.
    await admin.call("attachIsoToVmInstance", {
      path: { vmInstanceUuid: stopped.uuid, isoUuid: iso.uuid },
      params: {},
    });
    expect(qemuPid(stopped.uuid)).toBeUndefined();
    await admin.call("startVmInstance", { path: { uuid: stopped.uuid }, params: {} });
    await until(
      async () => openFiles(stopped.uuid),
      (files) => files.includes(cached),
      "ISO open in the started VM",
    );
    await admin.call("detachIsoFromVmInstance", {
      path: { vmInstanceUuid: stopped.uuid },
      query: { isoUuid: iso.uuid },
    });
    expect(openFiles(stopped.uuid)).not.toContain(cached);

    // Expunging a VM drops its CD-ROM record with it.
    await admin.call("attachIsoToVmInstance", {
      path: { vmInstanceUuid: stopped.uuid, isoUuid: iso.uuid },
      params: {},
    });
    await admin.call("destroyVmInstance", { path: { uuid: stopped.uuid } });
    await admin.call("expungeVmInstance", { path: { uuid: stopped.uuid }, params: {} });
    const left = await admin.query("queryVmInstance", [`uuid=${stopped.uuid}`]);
    expect(left.inventories).toEqual([]);
  });
});
