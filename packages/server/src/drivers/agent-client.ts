import { request as httpRequest } from "node:http";
import { signRequest, verifyRequest } from "@tstack/agent/auth";
import type { Core } from "../core/core.js";
import { newUuid } from "../core/ids.js";
import { run } from "./host-tools.js";

/** Address, port and secret of one host's agent. */
export interface AgentTarget {
  hostUuid: string;
  managementIp: string;
  agentPort: number;
  /** The per-host secret in clear text. */
  secret: string;
}

/** An agent command that failed: unreachable, rejected, timed out or reporting failure. */
export class AgentError extends Error {
  constructor(
    message: string,
    readonly path: string,
    readonly hostUuid: string,
    /** The agent was not reached or never replied, so the command may not have run at all. */
    readonly unreachable = false,
  ) {
    super(message);
    this.name = "AgentError";
  }
}

interface Pending {
  target: AgentTarget;
  path: string;
  resolve(body: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

const CONNECT_TIMEOUT_MS = 5000;

/** Long commands in flight per host, as ZStack's kvm.host.syncLevel. */
const HOST_CONCURRENCY = 10;

/**
 * Sends commands to host agents over HTTP, signed with each host's secret. Long commands carry
 * `taskuuid` and `callbackurl`; the agent replies at once and posts the result to the callback
 * route, where `complete` matches it to the waiting call.
 */
export class AgentClient {
  private readonly pending = new Map<string, Pending>();
  private readonly sourceAddresses = new Map<string, string>();

  constructor(private readonly core: Core) {}

  /** Sends a command that the agent replies to inline. */
  async call<T>(target: AgentTarget, path: string, body: unknown, timeoutMs = 30_000): Promise<T> {
    const reply = await this.post(target, path, body, {}, timeoutMs);
    return checkReply(reply, target, path) as T;
  }

  /**
   * Sends a long command and waits for its callback; the agent runs a repeated taskuuid once.
   * At most HOST_CONCURRENCY long commands run on one host at a time; the rest wait in order.
   */
  callAsync<T>(
    target: AgentTarget,
    path: string,
    body: unknown,
    options: { timeoutMs: number; taskUuid?: string; signal?: AbortSignal },
  ): Promise<T> {
    return this.core.queues.run(
      `host-commands:${target.hostUuid}`,
      () => this.callAsyncNow<T>(target, path, body, options),
      HOST_CONCURRENCY,
    );
  }

  private async callAsyncNow<T>(
    target: AgentTarget,
    path: string,
    body: unknown,
    options: { timeoutMs: number; taskUuid?: string; signal?: AbortSignal },
  ): Promise<T> {
    const taskUuid = options.taskUuid ?? newUuid();
    const callbackUrl = `${await this.managementUrl(target)}/zstack/asyncrest/callback`;
    const result = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          this.fail(
            taskUuid,
            new AgentError(
              `agent command ${path} on host ${target.hostUuid} timed out after ${options.timeoutMs} ms`,
              path,
              target.hostUuid,
              true,
            ),
          ),
        options.timeoutMs,
      );
      this.pending.set(taskUuid, { target, path, resolve, reject, timer });
    });
    // The timeout or an abort can reject `result` while the POST below is still waiting for its
    // reply. The await at the end handles that rejection, but Node would see it as unhandled first
    // and end the process, so a handler is attached now.
    result.catch(() => undefined);
    options.signal?.addEventListener(
      "abort",
      () =>
        this.fail(
          taskUuid,
          new AgentError(`agent command ${path} was cancelled`, path, target.hostUuid),
        ),
      { once: true },
    );

    try {
      await this.post(
        target,
        path,
        body,
        { taskuuid: taskUuid, callbackurl: callbackUrl },
        CONNECT_TIMEOUT_MS + 10_000,
      );
    } catch (error) {
      this.fail(taskUuid, error as Error);
    }

    return checkReply(await result, target, path) as T;
  }

  /** Matches a callback to its waiting call after checking the host's signature. */
  complete(
    taskUuid: string,
    rawBody: string,
    headers: Record<string, string | string[] | undefined>,
    path: string,
  ) {
    const entry = this.pending.get(taskUuid);

    if (!entry) {
      return { status: 404, reason: `no command is waiting for task ${taskUuid}` };
    }

    const verified = verifyRequest(entry.target.secret, "POST", path, rawBody, headers);

    if (!verified.ok) {
      return { status: 401, reason: verified.reason };
    }

    clearTimeout(entry.timer);
    this.pending.delete(taskUuid);
    entry.resolve(rawBody ? JSON.parse(rawBody) : {});
    return { status: 200, reason: "" };
  }

  /** Returns the management node's base URL as the host reaches it: our address on the route to the host. */
  async managementUrl(target: Pick<AgentTarget, "managementIp">) {
    let address = this.sourceAddresses.get(target.managementIp);

    if (!address) {
      const { stdout } = await run("ip", ["-4", "route", "get", target.managementIp]);
      address = /\bsrc (\S+)/.exec(stdout)?.[1] ?? "127.0.0.1";
      this.sourceAddresses.set(target.managementIp, address);
    }

    return `http://${address}:${this.core.port}`;
  }

  private fail(taskUuid: string, error: Error) {
    const entry = this.pending.get(taskUuid);

    if (entry) {
      clearTimeout(entry.timer);
      this.pending.delete(taskUuid);
      entry.reject(error);
    }
  }

  private post(
    target: AgentTarget,
    path: string,
    body: unknown,
    extraHeaders: Record<string, string>,
    timeoutMs: number,
  ): Promise<unknown> {
    const text = JSON.stringify(body ?? {});
    const headers = {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(text)),
      "x-resource-uuid": target.hostUuid,
      ...extraHeaders,
      ...signRequest(target.secret, "POST", path, text),
    };

    return new Promise((resolve, reject) => {
      const req = httpRequest(
        {
          host: target.managementIp,
          port: target.agentPort,
          path,
          method: "POST",
          headers,
          timeout: timeoutMs,
        },
        (response) => {
          let data = "";
          response.setEncoding("utf8");
          response.on("data", (chunk) => {
            data += chunk;
          });
          response.on("end", () => {
            if ((response.statusCode ?? 500) >= 300) {
              reject(
                new AgentError(
                  `agent on ${target.managementIp}:${target.agentPort} responded to ${path} with HTTP ${response.statusCode}: ${data.slice(0, 500)}`,
                  path,
                  target.hostUuid,
                ),
              );
              return;
            }

            try {
              resolve(data ? JSON.parse(data) : {});
            } catch {
              reject(
                new AgentError(
                  `agent responded to ${path} with invalid JSON`,
                  path,
                  target.hostUuid,
                ),
              );
            }
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no response within ${timeoutMs} ms`)));
      req.on("error", (error) =>
        reject(
          new AgentError(
            `failed to reach the agent at ${target.managementIp}:${target.agentPort} for ${path}: ${error.message}`,
            path,
            target.hostUuid,
            true,
          ),
        ),
      );
      req.end(text);
    });
  }
}

function checkReply(reply: unknown, target: AgentTarget, path: string) {
  const body = reply as { success?: boolean; error?: string };

  if (body && body.success === false) {
    throw new AgentError(
      `agent command ${path} failed on host ${target.hostUuid}: ${body.error ?? "no error text"}`,
      path,
      target.hostUuid,
    );
  }

  return reply;
}
