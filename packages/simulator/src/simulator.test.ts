import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { signRequest, verifyRequest } from "@tstack/agent/auth";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { HttpSimulatorControl } from "./control.js";
import { Simulator } from "./simulator.js";

const uuid = () => randomBytes(16).toString("hex");
const HOST_A = { uuid: uuid(), secret: uuid(), cpuNum: 8, memoryBytes: 16 * 1024 ** 3 };
const HOST_B = { uuid: uuid(), secret: uuid(), cpuNum: 4, memoryBytes: 8 * 1024 ** 3 };
const ADMIN_TOKEN = uuid();

interface Received {
  headers: IncomingMessage["headers"];
  body: Record<string, unknown>;
  verified: boolean;
}

/** A stand-in for the management node's callback route, recording what arrives. */
async function callbackReceiver(secret: () => string) {
  const received: Received[] = [];
  const server: Server = createServer((request, response) => {
    let text = "";
    request.on("data", (chunk) => {
      text += chunk;
    });
    request.on("end", () => {
      const verified = verifyRequest(secret(), "POST", request.url ?? "", text, request.headers);
      received.push({ headers: request.headers, body: JSON.parse(text), verified: verified.ok });
      response.end("{}");
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    received,
    url: `http://127.0.0.1:${port}/zstack/asyncrest/callback`,
    close: () => new Promise((done) => server.close(done)),
  };
}

async function until<T>(read: () => T | undefined, what: string): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const value = read();

    if (value !== undefined) {
      return value;
    }

    await new Promise((resolve) => setTimeout(resolve, 10));
  }

  throw new Error(`${what} did not happen`);
}

describe("Simulator", () => {
  const simulator = new Simulator({ adminToken: ADMIN_TOKEN });
  let base = "";
  let receiver: Awaited<ReturnType<typeof callbackReceiver>>;
  let secretOfReceiver = HOST_A.secret;

  async function command(
    host: { uuid: string; secret: string },
    path: string,
    body: object,
    extra: Record<string, string> = {},
  ) {
    const text = JSON.stringify(body);
    const response = await fetch(`${base}${path}`, {
      method: "POST",
      body: text,
      headers: {
        "content-type": "application/json",
        "x-resource-uuid": host.uuid,
        ...extra,
        ...signRequest(host.secret, "POST", path, text),
      },
      signal: AbortSignal.timeout(2000),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  async function startVm(
    host: { uuid: string; secret: string },
    vmUuid: string,
    taskUuid = uuid(),
  ) {
    secretOfReceiver = host.secret;
    return command(
      host,
      "/vm/start",
      { vmUuid, cpuNum: 1, memoryMiB: 128, disks: [], nics: [] },
      { taskuuid: taskUuid, callbackurl: receiver.url },
    );
  }

  const callbackOf = (taskUuid: string) =>
    receiver.received.find((entry) => entry.headers.taskuuid === taskUuid);

  beforeAll(async () => {
    const { port } = await simulator.start();
    base = `http://127.0.0.1:${port}`;
    receiver = await callbackReceiver(() => secretOfReceiver);
    await simulator.registerHost(HOST_A);
    await simulator.registerHost(HOST_B);
  });

  afterEach(async () => {
    await simulator.clearFaults();
  });

  afterAll(async () => {
    await simulator.stop();
    await receiver.close();
  });

  it("answers sync commands for each registered host", async () => {
    const a = await command(HOST_A, "/host/capacity", {});
    const b = await command(HOST_B, "/host/capacity", {});

    expect(a.body).toMatchObject({ success: true, cpuNum: 8 });
    expect(b.body).toMatchObject({ success: true, cpuNum: 4 });
  });

  it("rejects a command signed with another host's secret", async () => {
    const reply = await command({ uuid: HOST_A.uuid, secret: HOST_B.secret }, "/host/ping", {});

    expect(reply.status).toBe(401);
  });

  it("rejects an unregistered resource uuid", async () => {
    const reply = await command({ uuid: uuid(), secret: HOST_A.secret }, "/host/ping", {});

    expect(reply.status).toBe(404);
  });

  it("posts a signed callback and keeps the VM", async () => {
    const vmUuid = uuid();
    const taskUuid = uuid();
    const reply = await startVm(HOST_A, vmUuid, taskUuid);
    const callback = await until(() => callbackOf(taskUuid), "the start callback");

    expect(reply.body.success).toBe(true);
    expect(callback.verified).toBe(true);
    expect(callback.body).toMatchObject({ success: true, vmUuid, state: "Running" });
    expect((await simulator.state(HOST_A.uuid))[0]?.vms?.map((vm) => vm.vmUuid)).toContain(vmUuid);
  });

  it("hotplugs and unplugs a disk of a running VM", async () => {
    const vmUuid = uuid();
    const startTask = uuid();
    await startVm(HOST_A, vmUuid, startTask);
    await until(() => callbackOf(startTask), "the start callback");
    const path = `/sim/primary/vol-${uuid()}/data.qcow2`;
    const asyncCommand = async (commandPath: string, body: object) => {
      const taskUuid = uuid();
      await command(HOST_A, commandPath, body, { taskuuid: taskUuid, callbackurl: receiver.url });
      return (await until(() => callbackOf(taskUuid), `the ${commandPath} callback`)).body;
    };
    // The in-process state shares the VM's disk list, so each read takes a copy.
    const disks = async () => [
      ...((await simulator.state(HOST_A.uuid))[0]?.vms?.find((vm) => vm.vmUuid === vmUuid)?.disks ??
        []),
    ];

    const attached = await asyncCommand("/vm/volume/attach", {
      vmUuid,
      volumeUuid: uuid(),
      path,
      format: "qcow2",
    });
    const disksAfterAttach = await disks();
    const detached = await asyncCommand("/vm/volume/detach", { vmUuid, path });
    const detachedAgain = await asyncCommand("/vm/volume/detach", { vmUuid, path });

    expect(attached.success).toBe(true);
    expect(disksAfterAttach).toContain(path);
    expect(detached).toMatchObject({ success: true, detached: true });
    expect(await disks()).not.toContain(path);
    expect(detachedAgain).toMatchObject({ success: true, detached: false });
  });

  it("runs a repeated taskuuid once", async () => {
    const vmUuid = uuid();
    const taskUuid = uuid();
    await startVm(HOST_A, vmUuid, taskUuid);
    await until(() => callbackOf(taskUuid), "the first callback");
    const stopTask = uuid();
    await command(
      HOST_A,
      "/vm/stop",
      { vmUuid },
      { taskuuid: stopTask, callbackurl: receiver.url },
    );
    await until(() => callbackOf(stopTask), "the stop callback");
    const repeat = await startVm(HOST_A, vmUuid, taskUuid);

    expect(repeat.body.submitted).toBe(false);
    expect((await simulator.state(HOST_A.uuid))[0]?.vms?.map((vm) => vm.vmUuid)).not.toContain(
      vmUuid,
    );
  });

  it("fails a command with the fault's error text", async () => {
    await simulator.createFault({ path: "/host/facts", kind: "fail", errorText: "disk on fire" });
    const reply = await command(HOST_A, "/host/facts", {});

    expect(reply.body).toEqual({ success: false, error: "disk on fire" });
  });

  it("fails an async command in its callback without side effects", async () => {
    await simulator.createFault({ path: "/vm/start", kind: "fail", errorText: "no memory" });
    const vmUuid = uuid();
    const taskUuid = uuid();
    await startVm(HOST_A, vmUuid, taskUuid);
    const callback = await until(() => callbackOf(taskUuid), "the failed callback");

    expect(callback.body).toEqual({ success: false, error: "no memory" });
    expect((await simulator.state(HOST_A.uuid))[0]?.vms?.map((vm) => vm.vmUuid)).not.toContain(
      vmUuid,
    );
  });

  it("scopes a fault to one host", async () => {
    await simulator.createFault({
      path: "/host/ping",
      resourceUuid: HOST_B.uuid,
      kind: "fail",
      errorText: "only B",
    });

    expect((await command(HOST_A, "/host/ping", {})).body.success).toBe(true);
    expect((await command(HOST_B, "/host/ping", {})).body.success).toBe(false);
  });

  it("applies a fault without a resource to every host", async () => {
    await simulator.createFault({ path: "/host/ping", kind: "fail", errorText: "all" });

    expect((await command(HOST_A, "/host/ping", {})).body.success).toBe(false);
    expect((await command(HOST_B, "/host/ping", {})).body.success).toBe(false);
  });

  it("removes a fault once its count is used", async () => {
    const fault = await simulator.createFault({
      path: "/host/ping",
      kind: "fail",
      errorText: "twice",
      count: 2,
    });

    expect((await simulator.listFaults())[0]).toMatchObject({ uuid: fault.uuid, usesLeft: 2 });
    expect((await command(HOST_A, "/host/ping", {})).body.success).toBe(false);
    expect((await simulator.listFaults())[0]?.usesLeft).toBe(1);
    expect((await command(HOST_B, "/host/ping", {})).body.success).toBe(false);
    expect(await simulator.listFaults()).toEqual([]);
    expect((await command(HOST_A, "/host/ping", {})).body.success).toBe(true);
  });

  it("delays a reply by the fault's delay", async () => {
    await simulator.createFault({ path: "/host/echo", kind: "delay", delayMs: 50, count: 1 });
    const reply = await command(HOST_A, "/host/echo", {});

    expect(reply.body.success).toBe(true);
    expect(await simulator.listFaults()).toEqual([]);
  });

  it("never answers under a timeout fault", async () => {
    await simulator.createFault({ path: "/host/ping", kind: "timeout", count: 1 });
    const outcome = await command(HOST_A, "/host/ping", {}).then(
      () => "answered",
      (error: Error) => error.name,
    );

    expect(outcome).toBe("TimeoutError");
  });

  it("drops the callback but does the work", async () => {
    await simulator.createFault({ path: "/vm/start", kind: "drop-callback", count: 1 });
    const vmUuid = uuid();
    const dropped = uuid();
    const reply = await startVm(HOST_A, vmUuid, dropped);
    const next = uuid();
    await startVm(HOST_A, uuid(), next);
    await until(() => callbackOf(next), "the next callback");

    expect(reply.body.success).toBe(true);
    expect(callbackOf(dropped)).toBeUndefined();
    expect((await simulator.state(HOST_A.uuid))[0]?.vms?.map((vm) => vm.vmUuid)).toContain(vmUuid);
  });

  it("does not use up drop-callback on sync commands", async () => {
    await simulator.createFault({ path: "*", kind: "drop-callback", count: 1 });
    await command(HOST_A, "/host/ping", {});

    expect((await simulator.listFaults())[0]?.usesLeft).toBe(1);
  });

  it("takes a host down until the fault is deleted", async () => {
    const fault = await simulator.createFault({
      path: "*",
      resourceUuid: HOST_B.uuid,
      kind: "host-down",
    });
    const down = await command(HOST_B, "/host/ping", {}).then(
      () => "answered",
      () => "unreachable",
    );
    const other = await command(HOST_A, "/host/ping", {});
    await simulator.deleteFault(fault.uuid);
    const back = await command(HOST_B, "/host/ping", {});

    expect(down).toBe("unreachable");
    expect(other.body.success).toBe(true);
    expect(back.body.success).toBe(true);
  });

  it("rejects invalid fault specs", async () => {
    await expect(simulator.createFault({ path: "/vm/start", kind: "host-down" })).rejects.toThrow(
      /give \*/,
    );
    await expect(simulator.createFault({ path: "/vm/start", kind: "fail" })).rejects.toThrow(
      /missing errorText/,
    );
    await expect(simulator.createFault({ path: "*", kind: "delay", delayMs: -1 })).rejects.toThrow(
      /invalid delayMs/,
    );
  });

  it("serves the admin channel over HTTP with the token", async () => {
    const control = new HttpSimulatorControl(base, ADMIN_TOKEN);
    const fault = await control.createFault({ path: "/vm/stop", kind: "timeout", count: 3 });
    const listed = await control.listFaults();
    const removed = await control.deleteFault(fault.uuid);
    const state = await control.state(HOST_B.uuid);

    expect(listed.map((entry) => entry.uuid)).toEqual([fault.uuid]);
    expect(removed).toBe(true);
    expect(state[0]?.uuid).toBe(HOST_B.uuid);
  });

  it("rejects admin requests with a wrong token", async () => {
    const control = new HttpSimulatorControl(base, uuid());

    await expect(control.listFaults()).rejects.toThrow(/HTTP 401/);
  });

  it("rejects a host-down fault on one path over HTTP", async () => {
    const control = new HttpSimulatorControl(base, ADMIN_TOKEN);

    await expect(control.createFault({ path: "/vm/start", kind: "host-down" })).rejects.toThrow(
      /HTTP 400.*give \*/,
    );
  });
});
