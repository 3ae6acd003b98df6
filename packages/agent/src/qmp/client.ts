import { EventEmitter } from "node:events";
import { createConnection, type Socket } from "node:net";
import { QmpError, type QmpEvent, type QmpGreeting } from "./types.js";

/** Options of a QMP connection. */
export interface QmpConnectOptions {
  /** Milliseconds to wait for the socket, the greeting and `qmp_capabilities`; 5 s by default. */
  timeoutMs?: number;
}

/** Options of one QMP command. */
export interface QmpExecuteOptions {
  /** Milliseconds before the command is rejected with a `Timeout` QmpError; 10 s by default. */
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_EXECUTE_TIMEOUT_MS = 10_000;

/**
 * A QMP client over QEMU's unix socket. It emits `event` with each QmpEvent and `close` once
 * when the socket ends for any reason; commands still waiting are then rejected.
 */
export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  #socket: Socket;
  #buffer = "";
  #nextId = 1;
  #pending = new Map<string, Pending>();
  #closed = false;
  #greeting: QmpGreeting | undefined;

  private constructor(socket: Socket) {
    super();
    this.#socket = socket;
  }

  /**
   * Connects to a QMP socket, reads the greeting and negotiates `qmp_capabilities`, so the
   * returned client is in command mode.
   */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const socket = createConnection(path);
    const client = new QmpClient(socket);

    try {
      const greeting = await withTimeout(
        client.#start(),
        timeoutMs,
        `QMP greeting on ${path} timed out after ${timeoutMs} ms`,
      );
      client.#greeting = greeting;
      await client.execute("qmp_capabilities", undefined, { timeoutMs });
    } catch (error) {
      client.close();
      throw error;
    }

    return client;
  }

  /** QEMU's greeting, including its version. */
  get greeting(): QmpGreeting {
    return this.#greeting!;
  }

  /** Whether the socket has ended. */
  get closed() {
    return this.#closed;
  }

  /** Sends one command and resolves with its `return` value, matched to the reply by id. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: QmpExecuteOptions = {},
  ): Promise<T> {
    if (this.#closed) {
      return Promise.reject(
        new QmpError(command, "Closed", `QMP ${command} failed: socket closed`),
      );
    }

    const id = String(this.#nextId++);
    const timeoutMs = options.timeoutMs ?? DEFAULT_EXECUTE_TIMEOUT_MS;
    const message = JSON.stringify(
      args ? { execute: command, arguments: args, id } : { execute: command, id },
    );

    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new QmpError(command, "Timeout", `QMP ${command} timed out after ${timeoutMs} ms`));
      }, timeoutMs);

      this.#pending.set(id, {
        command,
        resolve: resolve as (value: unknown) => void,
        reject,
        timer,
      });
      this.#socket.write(`${message}\n`);
    });
  }

  /** Closes the socket; pending commands are rejected and `close` is emitted. */
  close() {
    this.#socket.destroy();
  }

  #start() {
    return new Promise<QmpGreeting>((resolve, reject) => {
      let greeted = false;

      this.#socket.setEncoding("utf8");
      this.#socket.on("error", (error) => {
        if (!greeted) {
          reject(error);
        }
      });
      this.#socket.on("close", () => {
        if (!greeted) {
          reject(new Error("QMP socket closed before the greeting"));
        }

        this.#handleClose();
      });
      this.#socket.on("data", (chunk: string) => {
        this.#buffer += chunk;

        for (let end = this.#buffer.indexOf("\n"); end >= 0; end = this.#buffer.indexOf("\n")) {
          const line = this.#buffer.slice(0, end).trim();
          this.#buffer = this.#buffer.slice(end + 1);

          if (!line) {
            continue;
          }

          const message = parseLine(line);

          if (!greeted && message && "QMP" in message) {
            greeted = true;
            resolve(message as unknown as QmpGreeting);
            continue;
          }

          if (message) {
            this.#dispatch(message);
          }
        }
      });
    });
  }

  #dispatch(message: Record<string, unknown>) {
    if (typeof message.event === "string") {
      this.emit("event", message as unknown as QmpEvent);
      return;
    }

    const id = message.id === undefined ? undefined : String(message.id);
    const pending = id === undefined ? undefined : this.#pending.get(id);

    if (!pending || id === undefined) {
      return;
    }

    this.#pending.delete(id);
    clearTimeout(pending.timer);

    if ("error" in message) {
      const error = message.error as { class?: string; desc?: string };
      const text = `QMP ${pending.command} failed: ${error.desc ?? "unknown error"}`;
      pending.reject(new QmpError(pending.command, error.class ?? "GenericError", text));
      return;
    }

    pending.resolve(message.return);
  }

  #handleClose() {
    if (this.#closed) {
      return;
    }

    this.#closed = true;

    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(
        new QmpError(pending.command, "Closed", `QMP ${pending.command} failed: socket closed`),
      );
    }

    this.#pending.clear();
    this.emit("close");
  }
}

function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return value && typeof value === "object" ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, message: string) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(message)), timeoutMs);
  });

  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
