import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { signRequest, verifyRequest } from "../src/auth.js";
import { run } from "../src/exec.js";
import { waitFor } from "./helpers.js";

const packageDir = resolve(import.meta.dirname, "..");

/** Compiles the agent package to dist/, so tests run the real `tstack-agent` entry point. */
export async function buildAgent() {
  await run("npx", ["tsc", "-p", packageDir], { timeoutMs: 180_000 });
}

/** A `tstack-agent` process started by a test. */
export class AgentProcess {
  url = "";
  readonly #child: ChildProcess;
  #output = "";

  constructor(dataDir: string, secret: string) {
    this.secret = secret;
    this.#child = spawn(
      process.execPath,
      [resolve(packageDir, "dist/main.js"), "--listen", "127.0.0.1:0", "--data-dir", dataDir],
      {
        env: { ...process.env, TSTACK_AGENT_ACCEL: "tcg", TSTACK_AGENT_LOG_LEVEL: "debug" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    this.#child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      this.#output += chunk;
    });
    this.#child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.#output += chunk;
    });
  }

  readonly secret: string;

  get pid() {
    return this.#child.pid!;
  }

  /** Log lines the agent wrote so far, for failure messages. */
  get output() {
    return this.#output;
  }

  /** Waits for the "agent started" log line and takes the URL from it. */
  async ready() {
    const line = await waitFor(
      "agent start",
      async () => this.#output.split("\n").find((text) => text.includes('"agent started"')),
      (found) => found !== undefined || this.#child.exitCode !== null,
      30_000,
    );

    if (!line) {
      throw new Error(`agent exited with ${this.#child.exitCode}: ${this.#output}`);
    }

    this.url = (JSON.parse(line) as { url: string }).url;
    return this;
  }

  /** Sends a signed POST and returns status and JSON body. */
  async post(path: string, body: unknown, headers: Record<string, string> = {}) {
    const text = JSON.stringify(body);
    const response = await fetch(`${this.url}${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...signRequest(this.secret, "POST", path, text),
        ...headers,
      },
      body: text,
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  /** Ends the agent with a signal and waits for the exit. */
  async kill(signal: NodeJS.Signals = "SIGTERM") {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) {
      return;
    }

    const exited = new Promise((done) => this.#child.once("exit", done));
    this.#child.kill(signal);
    await exited;
  }
}

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
  signed: boolean;
}

/** The management node's side for tests: receives callbacks and reports on 127.0.0.1. */
export class ManagementNode {
  readonly received: Received[] = [];
  url = "";
  #server: Server | undefined;

  constructor(readonly secret: string) {}

  async start() {
    this.#server = createServer((request, response) => {
      let text = "";
      request.setEncoding("utf8");
      request.on("data", (chunk: string) => {
        text += chunk;
      });
      request.on("end", () => {
        const path = request.url!;
        const verdict = verifyRequest(this.secret, "POST", path, text, request.headers);
        this.received.push({
          path,
          headers: request.headers,
          body: JSON.parse(text),
          signed: verdict.ok,
        });
        response.end("{}");
      });
    });
    await new Promise<void>((done) => this.#server!.listen(0, "127.0.0.1", done));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  /** Runs an asynchronous command and waits for its callback body. */
  async call(agent: AgentProcess, path: string, body: unknown, timeoutMs = 90_000) {
    const taskUuid = randomUUID();
    const headers = { taskuuid: taskUuid, callbackurl: `${this.url}/callback` };
    const response = await agent.post(path, body, headers);

    if (response.status !== 200) {
      throw new Error(`${path} returned ${response.status}: ${JSON.stringify(response.body)}`);
    }

    const callback = await waitFor(
      `callback of ${path}`,
      async () => this.received.find((item) => item.headers.taskuuid === taskUuid),
      (found) => found !== undefined,
      timeoutMs,
    );

    if (!callback!.signed) {
      throw new Error(`callback of ${path} carried an invalid signature`);
    }

    return callback!.body;
  }

  /** Returns the VM state reports received so far. */
  reports() {
    return this.received.filter((item) => item.headers.commandpath === "/vm/report/state");
  }

  async close() {
    await new Promise<void>((done) => (this.#server ? this.#server.close(() => done()) : done()));
  }
}
