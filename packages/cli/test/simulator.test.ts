import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_PASSWORD, type TestServer, until } from "../../server/test/harness.js";
import { type SimulatorCloud, startSimulatorCloud } from "../../server/test/simulator-cloud.js";
import { requireBuild, startTstack, tstack, tstackOnTerminal } from "./run.js";

interface Vm {
  uuid: string;
  name: string;
  state: string;
  hostUuid: string | null;
  rootVolumeUuid: string;
  defaultL3NetworkUuid: string;
  vmNics: Array<{ ip: string; l3NetworkUuid: string }>;
}

interface Volume {
  uuid: string;
  name: string;
  type: string;
  status: string;
  vmInstanceUuid: string | null;
}

let t: TestServer;
let cloud: SimulatorCloud;
let dir: string;
let config: string;

const run = (...args: string[]) => tstack(config, args);

/** Runs a command with `-o json` and returns its parsed output; stderr or a non-zero exit fails. */
async function json<T>(...args: string[]): Promise<T> {
  const result = await run(...args, "-o", "json");
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as T;
}

/** The flags that place a VM on the simulator cloud, every resource given by name. */
const placement = () => [
  "--image",
  "tcli-image",
  "--instance-offering",
  "tcli-small",
  "--l3-network",
  "tcli-l3",
];

const createVm = (name: string, ...extra: string[]) =>
  json<Vm>("vm", "create", "--name", name, ...placement(), ...extra);

async function vmsNamed(name: string) {
  return (await t.admin.query<Vm>("queryVmInstance", [`name=${name}`])).inventories;
}

async function login(file: string) {
  const result = await tstack(file, ["login", "--endpoint", t.server.url, "--account", "admin"], {
    TSTACK_PASSWORD: ADMIN_PASSWORD,
  });
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
}

beforeAll(async () => {
  requireBuild();
  ({ t, cloud } = await startSimulatorCloud({ hosts: 3, cidr: "10.72.0.0/24", prefix: "tcli" }));
  dir = mkdtempSync(join(tmpdir(), "tcli-sim-"));
  config = join(dir, "config.json");
  await login(config);
});

afterEach(async () => {
  await t.admin.call("deleteAllSimulatorFaults", {});
});

afterAll(async () => {
  await t?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("sessions", () => {
  it("logs in, lists and logs out", async () => {
    const file = join(dir, "session.json");
    await login(file);

    const listed = await tstack(file, ["host", "list"]);
    const out = await tstack(file, ["logout"]);
    const after = await tstack(file, ["host", "list"]);

    expect(listed.code).toBe(0);
    expect(out.stdout).toBe("logged out\n");
    expect(after.code).toBe(1);
    expect(after.stderr).toContain("error: not logged in");
  });

  it("reports an expired session", async () => {
    const file = join(dir, "expired.json");
    await login(file);
    const session = JSON.parse(readFileSync(file, "utf8")).session as string;
    await t.server.core.kysely
      .updateTable("sessions")
      .set({ expiredDate: new Date(Date.now() - 60_000).toISOString() })
      .where("uuid", "=", session)
      .execute();

    const result = await tstack(file, ["vm", "list"]);

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: ID\.1001 /);
    expect(result.stderr).toContain("hint: the session is missing or expired");
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});

describe("hosts", () => {
  it("lists hosts as a table", async () => {
    const result = await run("host", "list", "--sort", "name");
    const lines = result.stdout.trimEnd().split("\n");

    expect(result.code).toBe(0);
    expect(lines[0]).toMatch(/^UUID\s+NAME\s+MANAGEMENTIP\s+STATE\s+STATUS\s+TYPE\s+CLUSTERUUID$/);
    expect(lines).toHaveLength(4);
    expect(lines[1]).toMatch(
      new RegExp(`^${cloud.hostUuids[0]}\\s+tcli-host-0\\s+tcli-host-0\\s+Enabled\\s+Connected`),
    );
    expect(lines[1]).toContain("Simulator");
  });

  it("gets a host by name and by uuid", async () => {
    const byName = await json<{ uuid: string; status: string }>("host", "get", "tcli-host-1");
    const byUuid = await json<{ name: string }>("host", "get", cloud.hostUuids[1]!);
    const yaml = await run("host", "get", "tcli-host-1", "-o", "yaml");

    expect(byName.uuid).toBe(cloud.hostUuids[1]);
    expect(byName.status).toBe("Connected");
    expect(byUuid.name).toBe("tcli-host-1");
    expect(yaml.stdout).toContain(`uuid: ${cloud.hostUuids[1]}\n`);
    expect(yaml.stdout).toContain("hypervisorType: Simulator\n");
  });

  it("applies --query, --sort and --limit", async () => {
    const sorted = await json<Array<{ name: string }>>(
      "host",
      "list",
      "--query",
      "name~=tcli-host-%",
      "--query",
      "status=Connected",
      "--sort",
      "-name",
      "--limit",
      "2",
    );
    const none = await run("host", "list", "--query", "name=absent");

    expect(sorted.map((host) => host.name)).toEqual(["tcli-host-2", "tcli-host-1"]);
    expect(none.code).toBe(0);
    expect(none.stdout).toBe("");
  });
});

describe("VMs", () => {
  it("creates a VM with --wait", async () => {
    const vm = await createVm("cli-waited", "--wait");

    expect(vm.state).toBe("Running");
    expect(cloud.hostUuids).toContain(vm.hostUuid);
    expect(vm.vmNics[0]?.l3NetworkUuid).toBe(cloud.l3NetworkUuid);
    expect(vm.vmNics[0]?.ip).toMatch(/^10\.72\.0\.\d+$/);
  });

  it("creates a VM with --no-wait", async () => {
    const result = await run("vm", "create", "--name", "cli-later", ...placement(), "--no-wait");
    const location = result.stdout.trim();

    expect(result.code).toBe(0);
    expect(location).toMatch(/\/zstack\/v1\/api-jobs\/[0-9a-f]{32}$/);
    const done = (await t.admin.waitForJob(location)) as { inventory: Vm };
    expect(done.inventory.name).toBe("cli-later");
    expect(done.inventory.state).toBe("Running");
  });

  it("draws a progress bar on a terminal", async () => {
    await t.admin.call("createSimulatorFault", {
      params: { path: "/vm/start", kind: "delay", delayMs: 1500, count: 1 },
    });

    const result = await tstackOnTerminal(config, [
      "vm",
      "create",
      "--name",
      "cli-terminal",
      ...placement(),
      "--wait",
    ]);

    expect(result.code).toBe(0);
    expect(result.output).toMatch(/\[[#-]{30}\] \S+ starting QEMU/);
    // The bar's line is cleared before the result prints.
    expect(result.output).toContain("\r\x1b[2Kuuid ");
    expect(result.output).toMatch(/^state +Running\r?$/m);
  });

  it("lists VMs with state and IP columns", async () => {
    const vm = await createVm("cli-columns");
    const result = await run("vm", "list", "--query", "name=cli-columns");
    const [header, row, ...rest] = result.stdout.trimEnd().split("\n");

    expect(header).toMatch(/^UUID\s+NAME\s+STATE\s+IP\s+TYPE\s+CPU\s+MEMORY\s+HOSTUUID$/);
    expect(rest).toEqual([]);
    expect(row?.split(/\s+/)).toEqual([
      vm.uuid,
      "cli-columns",
      "Running",
      vm.vmNics[0]!.ip,
      "Simulator",
      "1",
      String(256 * 1024 * 1024),
      vm.hostUuid,
    ]);
  });

  it("runs the lifecycle by name", async () => {
    const vm = await createVm("cli-life");
    const action = async (verb: string, ...extra: string[]) =>
      (await json<Vm>("vm", verb, "cli-life", ...extra)).state;

    expect(await action("stop")).toBe("Stopped");
    expect(await action("start")).toBe("Running");
    expect(await action("reboot")).toBe("Running");
    expect(await action("stop", "--type", "cold")).toBe("Stopped");
    expect(await action("destroy")).toBe("Destroyed");
    expect(await action("recover")).toBe("Stopped");
    expect(await action("destroy")).toBe("Destroyed");

    const expunged = await run("vm", "expunge", "cli-life");
    expect(expunged.stderr).toBe("");
    expect(expunged.code).toBe(0);
    expect(await vmsNamed("cli-life")).toEqual([]);
    const volumes = await t.admin.query<Volume>("queryVolume", [`uuid=${vm.rootVolumeUuid}`]);
    expect(volumes.inventories).toEqual([]);
  });

  it("accepts a uuid where a name fits", async () => {
    const vm = await createVm("cli-by-uuid");

    const stopped = await json<Vm>("vm", "stop", vm.uuid);
    const shown = await json<Vm>("vm", "get", vm.uuid);

    expect(stopped.uuid).toBe(vm.uuid);
    expect(shown.state).toBe("Stopped");
  });

  it("resolves a qualified reference by name", async () => {
    const vm = await createVm("cli-default-l3", "--default-l3-network", "tcli-l3");

    expect(vm.defaultL3NetworkUuid).toBe(cloud.l3NetworkUuid);
  });

  it("places a VM on a host given by name", async () => {
    const vm = await createVm("cli-placed", "--host", "tcli-host-2");

    expect(vm.hostUuid).toBe(cloud.hostUuids[2]);
  });

  it("prints the console log", async () => {
    await createVm("cli-console");

    const result = await run("vm", "console", "cli-console");

    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).not.toBe("");
  });
});

describe("volumes and images", () => {
  it("creates, attaches, detaches and deletes a data volume", async () => {
    // NOTE: the simulator has no /vm/volume/attach (hotplug), so the VM is stopped first and
    // the attach only records the volume for its next start.
    await createVm("cli-disk-host");
    expect((await run("vm", "stop", "cli-disk-host")).code).toBe(0);
    const created = await json<Volume>(
      "volume",
      "create-data",
      "--name",
      "cli-data",
      "--disk-size",
      String(1024 * 1024 * 1024),
      "--primary-storage",
      "tcli-ps",
    );
    expect(created.status).toBe("Ready");

    const attached = await json<Volume>("volume", "attach-data-to-vm", "cli-data", "cli-disk-host");
    const [vm] = await vmsNamed("cli-disk-host");
    expect(attached.vmInstanceUuid).toBe(vm!.uuid);

    const table = await run(
      "volume",
      "list",
      "--query",
      `vmInstanceUuid=${vm!.uuid}`,
      "--sort",
      "type",
    );
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(
      /^UUID\s+NAME\s+TYPE\s+STATE\s+STATUS\s+SIZE\s+VMINSTANCEUUID\s+PRIMARYSTORAGEUUID$/,
    );
    expect(lines.slice(1).map((line) => line.split(/\s+/)[2])).toEqual(["Data", "Root"]);

    const detached = await json<Volume>("volume", "detach-data-from-vm", "cli-data");
    expect(detached.vmInstanceUuid).toBeNull();

    const deleted = await run("volume", "delete-data", "cli-data");
    expect(deleted.code).toBe(0);
    const expunged = await run("volume", "expunge-data", "cli-data");
    expect(expunged.stderr).toBe("");
    expect(expunged.code).toBe(0);
    expect((await t.admin.query("queryVolume", ["name=cli-data"])).inventories).toEqual([]);
  });

  it("lists, gets and updates images", async () => {
    const listed = await json<Array<{ uuid: string; name: string }>>(
      "image",
      "list",
      "--query",
      "name=tcli-image",
    );
    const updated = await json<{ description: string }>(
      "image",
      "update",
      "tcli-image",
      "--description",
      "from the CLI",
    );
    const yaml = await run("image", "get", "tcli-image", "-o", "yaml");

    expect(listed.map((image) => image.uuid)).toEqual([cloud.imageUuid]);
    expect(updated.description).toBe("from the CLI");
    expect(yaml.stdout).toContain("description: from the CLI\n");
    expect(yaml.stdout).toContain("mediaType: RootVolumeTemplate\n");
  });
});

describe("events", () => {
  it("follows the state changes of a VM stop", async () => {
    const vm = await createVm("cli-evented");
    await t.server.core.relay.settle();
    const last = await t.server.core.kysely
      .selectFrom("events")
      .select((eb) => eb.fn.max("id").as("id"))
      .executeTakeFirstOrThrow();
    const from = String(last.id);

    const following = run(
      "events",
      "--path",
      "/vm/state/change",
      "--last-event-id",
      from,
      "--count",
      "2",
      "-o",
      "json",
    );
    const stopped = await run("vm", "stop", "cli-evented");
    const result = await following;

    expect(stopped.code).toBe(0);
    expect(result.code).toBe(0);
    const events = result.stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events.map((event) => event.resourceUuid)).toEqual([vm.uuid, vm.uuid]);
    expect(events.map((event) => event.content.newState)).toEqual(["Stopping", "Stopped"]);
  });
});

describe("errors", () => {
  it.each([
    [["nosuch", "list"], /unknown command 'nosuch'/],
    [["vm", "launch", "x"], /unknown command 'launch'/],
    [["vm", "create", "--name", "x", ...placement(), "--cpus", "2"], /unknown option '--cpus'/],
    [["vm", "create", "--name", "x"], /required option '--image <image>' not specified/],
    [["vm", "stop", "x", "--type", "hard"], /expected one of grace, cold/],
    [["vm", "list", "--limit", "ten"], /'ten' is not a non-negative integer/],
    [["vm", "create", "--name", "x", "--cpu-num", "one"], /'one' is not an integer/],
    [["vm", "list", "-o", "csv"], /Allowed choices are table, json, yaml/],
    [["vm", "stop"], /missing required argument/],
  ])("exits 2 for %j", async (args, message) => {
    const result = await run(...args);

    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it("reports an unknown VM name", async () => {
    const result = await run("vm", "stop", "cli-nowhere");

    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      "error: vm-instance 'cli-nowhere' not found: no VmInstance has that name or uuid\n",
    );
  });

  it("reports an unknown referenced image", async () => {
    const result = await run(
      "vm",
      "create",
      "--name",
      "x",
      ...placement().slice(2),
      "--image",
      "cli-no-image",
    );

    expect(result.code).toBe(1);
    expect(result.stderr).toContain("image 'cli-no-image' not found");
  });

  it("prints code, details and elaboration", async () => {
    const result = await run(
      "vm",
      "create",
      "--name",
      "cli-huge",
      "--image",
      "tcli-image",
      "--l3-network",
      "tcli-l3",
      "--cpu-num",
      "1",
      "--memory-size",
      String(1024 ** 4),
    );

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: SYS\.\d+ /);
    expect(result.stderr).toMatch(/^details: .*no host can run a VM/m);
    expect(result.stderr).toMatch(/^elaboration: add or enable hosts/m);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(await vmsNamed("cli-huge")).toEqual([]);
  });

  it("cancels the job on SIGINT", async () => {
    await t.admin.call("createSimulatorFault", {
      params: { path: "/vm/start", kind: "delay", delayMs: 5000, count: 1 },
    });
    const { child, done } = startTstack(config, [
      "vm",
      "create",
      "--name",
      "cli-interrupted",
      ...placement(),
    ]);
    const runningJob = async () =>
      (
        await t.admin.query<{ uuid: string; progressText: string | null }>("queryApiJob", [
          "apiName=createVmInstance",
          "state=Running",
        ])
      ).inventories.find((job) => job.progressText === "starting QEMU");
    const job = await until(runningJob, (found) => found !== undefined, "the VM start");

    child.kill("SIGINT");
    const result = await done;

    expect(result.code).toBe(1);
    expect(result.stderr).toBe("error: interrupted; cancelled the job\n");
    const ended = await until(
      async () =>
        (await t.admin.query<{ state: string }>("queryApiJob", [`uuid=${job!.uuid}`]))
          .inventories[0],
      (found) => found?.state !== "Running",
      "the cancelled job ending",
    );
    expect(ended?.state).toBe("Failed");
    const left = await until(
      () => vmsNamed("cli-interrupted"),
      (vms) => vms.length === 0,
      "the rollback of the interrupted VM",
    );
    expect(left).toEqual([]);
  });

  it("fails a create cleanly on a fault", async () => {
    await t.admin.call("createSimulatorFault", {
      params: { path: "/vm/start", kind: "fail", errorText: "simulated QEMU crash", count: 1 },
    });

    const result = await run("vm", "create", "--name", "cli-doomed", ...placement());

    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^error: SYS\.\d+ /);
    expect(result.stderr).toMatch(/^details: .*simulated QEMU crash/m);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(await vmsNamed("cli-doomed")).toEqual([]);
  });
});
