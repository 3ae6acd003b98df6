import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { QmpClient } from "./client.js";
import type { QmpEvent } from "./types.js";

type Handler = (command: Record<string, unknown>, socket: Socket) => void;

const greeting = {
  QMP: {
    version: { qemu: { major: 7, minor: 2, micro: 22 }, package: "" },
    capabilities: ["oob"],
  },
};

let dir: string;
let server: Server;
let sockets: Socket[];
let received: Record<string, unknown>[];

/** Starts a fake QMP server that greets, then passes each command line to `handler`. */
async function startFake(handler: Handler, options: { greet?: boolean } = {}) {
  const path = join(dir, "qmp.sock");
  server = createServer((socket) => {
    sockets.push(socket);

    if (options.greet !== false) {
      socket.write(`${JSON.stringify(greeting)}\r\n`);
    }

    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffer += chunk;

      for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
        const command = JSON.parse(buffer.slice(0, end)) as Record<string, unknown>;
        buffer = buffer.slice(end + 1);
        received.push(command);
        handler(command, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return path;
}

function reply(socket: Socket, id: unknown, value: unknown = {}) {
  socket.write(`${JSON.stringify({ return: value, id })}\r\n`);
}

const answerAll: Handler = (command, socket) => reply(socket, command.id);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tqa-qmp-"));
  sockets = [];
  received = [];
});

afterEach(async () => {
  for (const socket of sockets) {
    socket.destroy();
  }

  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await rm(dir, { recursive: true, force: true });
});

describe("QmpClient", () => {
  it("negotiates capabilities after the greeting", async () => {
    const client = await QmpClient.connect(await startFake(answerAll));

    expect(received[0]?.execute).toBe("qmp_capabilities");
    expect(client.greeting.QMP.version.qemu.major).toBe(7);

    client.close();
  });

  it("matches replies to commands by id", async () => {
    const path = await startFake((command, socket) => {
      if (command.execute === "query-status") {
        // Reply out of order: the slow reply comes after the next command's reply.
        setTimeout(() => reply(socket, command.id, { status: "running" }), 50);
        return;
      }

      reply(socket, command.id, { name: command.execute });
    });
    const client = await QmpClient.connect(path);

    const [status, name] = await Promise.all([
      client.execute("query-status"),
      client.execute("query-name"),
    ]);

    expect(status).toEqual({ status: "running" });
    expect(name).toEqual({ name: "query-name" });

    client.close();
  });

  it("sends arguments", async () => {
    const client = await QmpClient.connect(await startFake(answerAll));

    await client.execute("set_password", { protocol: "vnc", password: "pw" });

    expect(received[1]?.arguments).toEqual({ protocol: "vnc", password: "pw" });

    client.close();
  });

  it("rejects with the QMP error class and description", async () => {
    const path = await startFake((command, socket) => {
      if (command.execute === "qmp_capabilities") {
        reply(socket, command.id);
        return;
      }

      const error = { class: "CommandNotFound", desc: "The command nope has not been found" };
      socket.write(`${JSON.stringify({ error, id: command.id })}\n`);
    });
    const client = await QmpClient.connect(path);

    const failure = client.execute("nope");

    await expect(failure).rejects.toMatchObject({
      errorClass: "CommandNotFound",
      message: "QMP nope failed: The command nope has not been found",
    });

    client.close();
  });

  it("times out a command without reply", async () => {
    const path = await startFake((command, socket) => {
      if (command.execute === "qmp_capabilities") {
        reply(socket, command.id);
      }
    });
    const client = await QmpClient.connect(path);

    const failure = client.execute("query-status", undefined, { timeoutMs: 50 });

    await expect(failure).rejects.toMatchObject({ errorClass: "Timeout" });

    client.close();
  });

  it("emits events", async () => {
    const path = await startFake(answerAll);
    const client = await QmpClient.connect(path);
    const events: QmpEvent[] = [];
    const seen = new Promise<void>((resolve) =>
      client.on("event", (event) => {
        events.push(event);
        resolve();
      }),
    );

    const shutdown = {
      event: "SHUTDOWN",
      data: { guest: true, reason: "guest-shutdown" },
      timestamp: { seconds: 1, microseconds: 2 },
    };
    sockets[0]!.write(`${JSON.stringify(shutdown)}\r\n`);
    await seen;

    expect(events).toEqual([shutdown]);

    client.close();
  });

  it("rejects pending commands and emits close when the socket ends", async () => {
    const path = await startFake((command, socket) => {
      if (command.execute === "qmp_capabilities") {
        reply(socket, command.id);
        return;
      }

      socket.destroy();
    });
    const client = await QmpClient.connect(path);
    const closed = new Promise<void>((resolve) => client.on("close", resolve));

    const failure = client.execute("quit");

    await expect(failure).rejects.toMatchObject({ errorClass: "Closed" });
    await closed;
    expect(client.closed).toBe(true);
    await expect(client.execute("query-status")).rejects.toMatchObject({ errorClass: "Closed" });
  });

  it("fails to connect when no greeting arrives", async () => {
    const path = await startFake(answerAll, { greet: false });

    const failure = QmpClient.connect(path, { timeoutMs: 100 });

    await expect(failure).rejects.toThrow(/QMP greeting on .* timed out after 100 ms/);
  });

  it("fails to connect to a missing socket", async () => {
    const failure = QmpClient.connect(join(dir, "missing.sock"));

    await expect(failure).rejects.toMatchObject({ code: "ENOENT" });
  });
});
