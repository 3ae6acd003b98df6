import { mkdir } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { removeDir, tempDir, waitFor } from "../../test/helpers.js";
import { signRequest, verifyRequest } from "../auth.js";
import { ContainerDriver } from "../container/index.js";
import { QemuDriver } from "../vm/index.js";
import { buildServer } from "./app.js";
import { Reporter } from "./reporter.js";

const secret = "test-secret-0123456789abcdef";
const logger = pino({ level: process.env.TSTACK_TEST_LOG ?? "silent" });
const vmUuid = "0123456789abcdef0123456789abcdef";

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
  signed: boolean;
}

let dir: string;
let app: FastifyInstance;
let driver: QemuDriver;
let containers: ContainerDriver;
let receiver: Server;
let receiverUrl: string;
let received: Received[];

/** Starts an HTTP server on 127.0.0.1 that records callbacks and checks their signatures. */
async function startReceiver() {
  receiver = createServer((request, response) => {
    let text = "";
    request.setEncoding("utf8");
    request.on("data", (chunk: string) => {
      text += chunk;
    });
    request.on("end", () => {
      const path = request.url!;
      const verdict = verifyRequest(secret, "POST", path, text, request.headers);
      received.push({ path, headers: request.headers, body: JSON.parse(text), signed: verdict.ok });
      response.end("{}");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
}

function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  const signature = signRequest(secret, "POST", path, text);

  return app.inject({
    method: "POST",
    url: path,
    payload: text,
    headers: { "content-type": "application/json", ...signature, ...headers },
  });
}

function task(taskUuid: string) {
  return { taskuuid: taskUuid, callbackurl: `${receiverUrl}/callback` };
}

beforeEach(async () => {
  dir = await tempDir();
  received = [];
  await startReceiver();
  driver = new QemuDriver({ dataDir: dir, accel: "tcg", logger, onReport: () => undefined });
  containers = new ContainerDriver({
    dataDir: dir,
    logger,
    namePrefix: "tct",
    onReport: () => undefined,
  });
  app = buildServer({
    dataDir: dir,
    secret: () => secret,
    driver,
    containers,
    reporter: new Reporter(() => secret, logger),
    logger,
    collectFacts: () => Promise.reject(new Error("not used")),
    callbackBackoffMs: 10,
  });
});

afterEach(async () => {
  await app.close();
  containers.close();
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
  await removeDir(dir);
});

describe("command server authentication", () => {
  it("answers echo without a signature", async () => {
    const response = await app.inject({ method: "POST", url: "/host/echo" });

    expect(response.statusCode).toBe(200);
  });

  it("rejects an unsigned ping with 401", async () => {
    const response = await app.inject({ method: "POST", url: "/host/ping", payload: {} });

    expect(response.statusCode).toBe(401);
    expect(response.json()).toEqual({
      success: false,
      error: "missing X-Tstack-Timestamp or X-Tstack-Signature header",
    });
  });

  it("rejects a body changed after signing", async () => {
    const signature = signRequest(secret, "POST", "/host/ping", "{}");
    const response = await app.inject({
      method: "POST",
      url: "/host/ping",
      payload: '{"x":1}',
      headers: { "content-type": "application/json", ...signature },
    });

    expect(response.statusCode).toBe(401);
  });

  it("rejects another secret", async () => {
    const signature = signRequest("another-secret-0123456789", "POST", "/host/ping", "{}");
    const response = await app.inject({
      method: "POST",
      url: "/host/ping",
      payload: "{}",
      headers: { "content-type": "application/json", ...signature },
    });

    expect(response.statusCode).toBe(401);
  });
});

describe("request log", () => {
  it("hides URL tokens", async () => {
    const lines: string[] = [];
    const captured = pino({ level: "info" }, { write: (line: string) => lines.push(line) });
    const logged = buildServer({
      dataDir: dir,
      secret: () => secret,
      driver,
      containers,
      reporter: new Reporter(() => secret, captured),
      logger: captured,
      collectFacts: () => Promise.reject(new Error("not used")),
    });

    await logged.inject({ method: "GET", url: "/imagestore/x/image.qcow2?expires=1&token=s3cr3t" });
    await logged.close();

    const urls = lines.map((line) => JSON.parse(line).req?.url).filter(Boolean);
    expect(urls).toEqual(["/imagestore/x/image.qcow2?expires=1&token=[redacted]"]);
    expect(lines.join("")).not.toContain("s3cr3t");
  });
});

describe("host routes", () => {
  it("pings before and after connect", async () => {
    const before = (await post("/host/ping", {})).json();

    expect(before).toMatchObject({ success: true, hostUuid: null });
    expect(before.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(before.bootId).toMatch(/^[0-9a-f-]{36}$/);

    const connect = await post("/host/connect", {
      hostUuid: vmUuid,
      sendCommandUrl: `${receiverUrl}/sendcommand`,
    });
    const after = (await post("/host/ping", {})).json();

    expect(connect.json()).toEqual({ success: true, hostUuid: vmUuid });
    expect(after.hostUuid).toBe(vmUuid);
    expect(after.sendCommandUrl).toBe(`${receiverUrl}/sendcommand`);
  });

  it("rejects a connect without hostUuid", async () => {
    const response = await post("/host/connect", { sendCommandUrl: "http://127.0.0.1:1/" });

    expect(response.statusCode).toBe(400);
    expect(response.json().error).toMatch(/invalid hostUuid/);
  });

  it("returns capacity", async () => {
    const capacity = (await post("/host/capacity", {})).json();

    expect(capacity.success).toBe(true);
    expect(capacity.cpuNum).toBeGreaterThan(0);
    expect(capacity.availableMemory).toBeGreaterThan(0);
  });
});

describe("VM routes", () => {
  it("syncs an empty host", async () => {
    expect((await post("/vm/vmsync", {})).json()).toEqual({ success: true, states: {} });
  });

  it("rejects an async command without taskuuid", async () => {
    const response = await post("/vm/stop", { vmUuid });

    expect(response.statusCode).toBe(400);
    expect(response.json().error).toMatch(/missing taskuuid header/);
  });

  it("posts a signed result to the callback", async () => {
    const response = await post("/vm/stop", { vmUuid }, task("t-1"));

    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({});
    await waitFor(
      "callback",
      async () => received.length,
      (count) => count === 1,
      5000,
    );
    expect(received[0]?.path).toBe("/callback");
    expect(received[0]?.headers.taskuuid).toBe("t-1");
    expect(received[0]?.signed).toBe(true);
    expect(received[0]?.body).toEqual({ success: true, vmUuid, state: "Stopped" });
  });

  it("posts a failure with its error", async () => {
    await post("/vm/pause", { vmUuid }, task("t-2"));

    await waitFor(
      "callback",
      async () => received.length,
      (count) => count === 1,
      5000,
    );
    expect(received[0]?.body).toEqual({
      success: false,
      error: `VM ${vmUuid} is not running on this host`,
    });
  });

  it("posts a validation failure of an async body", async () => {
    await post("/vm/reboot", { vmUuid: "../x" }, task("t-3"));

    await waitFor(
      "callback",
      async () => received.length,
      (count) => count === 1,
      5000,
    );
    expect(received[0]?.body.success).toBe(false);
    expect(received[0]?.body.error).toMatch(/invalid vmUuid/);
  });

  it("routes a container start by hypervisorType", async () => {
    await post("/vm/start", { hypervisorType: "Container", vmUuid }, task("t-ct1"));

    await waitFor(
      "callback",
      async () => received.length,
      (count) => count === 1,
      5000,
    );
    expect(received[0]?.body.success).toBe(false);
    expect(received[0]?.body.error).toMatch(/invalid memoryMiB/);
  });

  it("routes commands to the container owning the UUID", async () => {
    await mkdir(join(dir, "containers", vmUuid), { recursive: true });

    await post("/vm/pause", { vmUuid }, task("t-ct2"));

    await waitFor(
      "callback",
      async () => received.length,
      (count) => count === 1,
      5000,
    );
    expect(received[0]?.body.error).toBe(`container ${vmUuid} is not running on this host`);
  });

  it("runs a repeated taskuuid once and re-sends its result", async () => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const stop = vi.spyOn(driver, "stop").mockImplementation(async () => {
      await gate;
      return { vmUuid, state: "Stopped" };
    });

    await post("/vm/stop", { vmUuid }, task("t-4"));
    await post("/vm/stop", { vmUuid }, task("t-4"));
    await sleep(50);

    expect(received).toHaveLength(0);
    release();
    await waitFor(
      "callback",
      async () => received.length,
      (count) => count === 1,
      5000,
    );

    await post("/vm/stop", { vmUuid }, task("t-4"));
    await waitFor(
      "repeated callback",
      async () => received.length,
      (count) => count === 2,
      5000,
    );
    expect(stop).toHaveBeenCalledTimes(1);
    expect(received[1]?.body).toEqual(received[0]?.body);
    expect(received[1]?.headers.taskuuid).toBe("t-4");
  });

  it("rejects an invalid console request", async () => {
    const response = await post("/vm/console", { vmUuid, bytes: 0 });

    expect(response.statusCode).toBe(400);
    expect(response.json().error).toMatch(/invalid bytes/);
  });
});

describe("Reporter", () => {
  it("sends a signed report with commandpath", async () => {
    const reporter = new Reporter(() => secret, logger);
    reporter.send({ vmUuid, state: "Crashed", reason: "test" });

    reporter.setUrl(`${receiverUrl}/sendcommand`);

    await waitFor(
      "report",
      async () => received.length,
      (count) => count === 1,
      5000,
    );
    expect(received[0]?.path).toBe("/sendcommand");
    expect(received[0]?.headers.commandpath).toBe("/vm/report/state");
    expect(received[0]?.signed).toBe(true);
    expect(received[0]?.body).toEqual({ vmUuid, state: "Crashed", reason: "test" });
  });
});
