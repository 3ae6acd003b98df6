import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { withTurnBudget } from "./turn-budget.js";

const SLOW_REQUESTS = 8;

/**
 * The client runs in a worker thread, so it keeps sending while the server's thread is busy. It
 * opens one connection per slow request and warms each, then sends `/block`, which keeps the
 * server's thread busy for 300 ms. Meanwhile it sends every `/slow` request and opens one more
 * connection. It reports the paths in the order their responses arrived.
 */
const CLIENT = `
const net = require("node:net");
const { parentPort, workerData } = require("node:worker_threads");
const { port, slow } = workerData;
const completed = [];

function open() {
  return new Promise((done) => {
    const socket = net.connect(port, "127.0.0.1", () => done(socket));
  });
}

function ask(socket, path) {
  return new Promise((done) => {
    let text = "";
    const onData = (chunk) => {
      text += chunk;
      if (text.endsWith("\\r\\n\\r\\n" + path)) {
        socket.off("data", onData);
        completed.push(path);
        done();
      }
    };
    socket.on("data", onData);
    socket.write("GET " + path + " HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n");
  });
}

(async () => {
  const sockets = [];
  for (let index = 0; index <= slow; index++) {
    const socket = await open();
    await ask(socket, "/warm");
    sockets.push(socket);
  }
  completed.length = 0;

  const blocked = ask(sockets[0], "/block");
  await new Promise((done) => setTimeout(done, 50));
  const pending = sockets.slice(1).map((socket, index) => ask(socket, "/slow-" + index));
  const late = await open();
  pending.push(ask(late, "/late"));
  await Promise.all([blocked, ...pending]);
  for (const socket of [...sockets, late]) socket.destroy();
  parentPort.postMessage(completed);
})();
`;

function busyWait(milliseconds: number) {
  const end = performance.now() + milliseconds;

  while (performance.now() < end) {
    // Keeps the server's thread busy, as a request that costs CPU does.
  }
}

describe("turn budget", () => {
  let close = () => {};

  afterEach(() => close());

  it("accepts connections while requests wait", async () => {
    const events: string[] = [];
    const handler = (request: IncomingMessage, response: ServerResponse) => {
      const path = request.url ?? "";

      if (path === "/block") {
        busyWait(300);
      } else if (path.startsWith("/slow")) {
        busyWait(5);
      }

      events.push(`done ${path}`);
      response.end(path);
    };
    const server = createServer(withTurnBudget(handler, 2));
    server.on("connection", () => events.push("connection"));
    await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
    close = () => server.close();
    const { port } = server.address() as AddressInfo;

    const worker = new Worker(CLIENT, { eval: true, workerData: { port, slow: SLOW_REQUESTS } });
    const completed = await new Promise<string[]>((done, failed) => {
      worker.once("message", done);
      worker.once("error", failed);
    });
    await worker.terminate();

    const slowPaths = Array.from({ length: SLOW_REQUESTS }, (_, index) => `/slow-${index}`);
    expect(completed.filter((path) => path.startsWith("/slow"))).toEqual(slowPaths);
    expect(completed).toContain("/late");

    // Without the budget, the turn after /block runs every slow request before it accepts.
    const measured = events.slice(events.indexOf("done /block"));
    const lateConnection = measured.indexOf("connection");
    const slowBeforeIt = measured
      .slice(0, lateConnection)
      .filter((event) => event.startsWith("done /slow"));
    expect(lateConnection).toBeGreaterThan(0);
    expect(slowBeforeIt.length).toBeLessThanOrEqual(2);
  });

  it("skips requests of closed connections", async () => {
    const handled: string[] = [];
    const handler = withTurnBudget((request, response) => {
      handled.push(request.url ?? "");
      busyWait(5);
      response.end();
    }, 2);
    const request = (url: string, destroyed: boolean) =>
      ({ url, socket: { destroyed } }) as unknown as IncomingMessage;
    const response = { end() {} } as unknown as ServerResponse;

    handler(request("/first", false), response);
    handler(request("/gone", true), response);
    handler(request("/kept", false), response);
    await new Promise((done) => setImmediate(done));
    await new Promise((done) => setImmediate(done));

    expect(handled).toEqual(["/first", "/kept"]);
  });
});
