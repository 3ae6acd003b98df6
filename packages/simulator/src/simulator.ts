import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { verifyRequest } from "@tstack/agent/auth";
import { type Logger, pino } from "pino";
import { handleAdmin } from "./admin.js";
import { Callbacks } from "./callbacks.js";
import {
  ASYNC_PATHS,
  type Body,
  COMMANDS,
  type CommandContext,
  CommandError,
  UNSIGNED_PATHS,
} from "./commands/index.js";
import { simulatedImage } from "./commands/storage-commands.js";
import type { SimulatorControl, VmStateChange } from "./control.js";
import { type Fault, type FaultSpec, FaultTable, parseFaultSpec } from "./faults.js";
import { send } from "./http.js";
import { MetricsPusher } from "./metrics.js";
import {
  type HostRegistration,
  hostState,
  type NodeState,
  newPrimaryFiles,
  type SimHost,
  type SimImage,
  type SimStorage,
  type StorageRegistration,
  storageState,
} from "./state.js";

/** Settings of a Simulator. */
export interface SimulatorOptions {
  /** Address to listen on; 127.0.0.1 by default. */
  host?: string;
  /** Port to listen on; 0 (any free port) by default. */
  port?: number;
  /** Token that signs admin requests; unset disables the admin paths over HTTP. */
  adminToken?: string;
  logger?: Logger;
}

interface Task {
  result?: Body;
  /** Whether a drop-callback fault swallowed the callback, so repeats send none either. */
  dropped: boolean;
}

const MAX_BODY_BYTES = 1024 * 1024;
const MAX_TASKS = 10_000;

/**
 * Serves the host agent protocol for many simulated hosts and backup storages on one HTTP port,
 * dispatching on the `x-resource-uuid` header that every command carries. State lives in memory
 * only, and faults injected through the admin channel change how commands are answered.
 */
export class Simulator implements SimulatorControl {
  readonly faults = new FaultTable();
  readonly log: Logger;
  readonly #options: SimulatorOptions;
  readonly #hosts = new Map<string, SimHost>();
  readonly #storages = new Map<string, SimStorage>();
  readonly #markers = new Map<string, string>();
  readonly #tasks = new Map<string, Task>();
  /** Requests a timeout fault keeps unanswered, closed when the simulator stops. */
  readonly #held = new Set<ServerResponse>();
  readonly #callbacks: Callbacks;
  readonly #metrics: MetricsPusher;
  #server: Server | undefined;
  #address: AddressInfo | undefined;

  constructor(options: SimulatorOptions = {}) {
    this.#options = options;
    this.log = options.logger ?? pino({ level: "silent" });
    this.#callbacks = new Callbacks(this.log);
    this.#metrics = new MetricsPusher({
      hosts: () => this.#hosts.values(),
      isDown: (hostUuid) => this.faults.isDown([hostUuid]),
      log: this.log,
    });
  }

  /** Starts listening; returns the address. */
  async start() {
    const server = createServer((request, response) => {
      this.#receive(request, response).catch((error: unknown) => {
        this.log.error({ err: error, url: request.url }, "simulator request failed");
        send(response, 500, { success: false, error: String((error as Error)?.message ?? error) });
      });
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#options.port ?? 0, this.#options.host ?? "127.0.0.1", resolve);
    });
    this.#server = server;
    this.#address = server.address() as AddressInfo;
    this.#metrics.start();
    this.log.info({ address: this.#address }, "simulator listening");
    return { host: this.#address.address, port: this.#address.port };
  }

  /** Address and port the simulator listens on; throws before start. */
  get address() {
    if (!this.#address) {
      throw new Error("the simulator is not listening; call start() first");
    }

    return { host: this.#address.address, port: this.#address.port };
  }

  async stop() {
    for (const response of this.#held) {
      response.socket?.destroy();
    }

    this.#held.clear();
    this.#callbacks.stop();
    this.#metrics.stop();
    const server = this.#server;
    this.#server = undefined;

    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      this.log.info("simulator stopped");
    }
  }

  async registerHost(registration: HostRegistration) {
    const existing = this.#hosts.get(registration.uuid);

    if (existing) {
      Object.assign(existing, registration);
      return;
    }

    this.#hosts.set(registration.uuid, {
      ...registration,
      hostUuid: null,
      sendCommandUrl: null,
      bootId: randomUUID(),
      vms: new Map(),
      bridges: new Map(),
      dhcp: new Map(),
      userdata: new Map(),
      nat: new Set(),
      securityGroupNics: new Map(),
      remoteGroups: new Map(),
      localFiles: new Map(),
    });
    this.log.info({ hostUuid: registration.uuid }, "registered a simulated host");
  }

  async unregisterHost(uuid: string) {
    return this.#hosts.delete(uuid);
  }

  async registerStorage(registration: StorageRegistration) {
    const { images = [], ...fields } = registration;
    const existing = this.#storages.get(registration.uuid);

    if (existing) {
      Object.assign(existing, fields);
      addImages(existing.images, images);
      return;
    }

    const stored = new Map<string, SimImage>();
    addImages(stored, images);
    this.#storages.set(registration.uuid, {
      ...fields,
      images: stored,
      files: newPrimaryFiles(),
    });
    this.log.info(
      { storageUuid: registration.uuid, kind: registration.kind },
      "registered a simulated storage",
    );
  }

  async unregisterStorage(uuid: string) {
    return this.#storages.delete(uuid);
  }

  async state(uuid?: string): Promise<NodeState[]> {
    const hosts = [...this.#hosts.values()].filter((host) => !uuid || host.uuid === uuid);
    const storages = [...this.#storages.values()].filter(
      (storage) => !uuid || storage.uuid === uuid,
    );
    return [...hosts.map(hostState), ...storages.map(storageState)];
  }

  async createFault(spec: FaultSpec): Promise<Fault> {
    const fault = this.faults.add(parseFaultSpec(spec));
    this.log.info({ fault }, "injected a fault");
    return fault;
  }

  async listFaults() {
    return this.faults.list();
  }

  async deleteFault(uuid: string) {
    return this.faults.remove(uuid);
  }

  async clearFaults() {
    return this.faults.clear();
  }

  async reportVmState(change: VmStateChange) {
    const host = this.#hosts.get(change.hostUuid);

    if (!host) {
      throw new CommandError(`host ${change.hostUuid} is not registered with the simulator`);
    }

    const vm = host.vms.get(change.vmUuid);

    if (change.state === "Stopped" || change.state === "Crashed") {
      host.vms.delete(change.vmUuid);
    } else if (vm) {
      vm.state = change.state;
    } else {
      throw new CommandError(`VM ${change.vmUuid} is not on host ${change.hostUuid}`);
    }

    if (!host.sendCommandUrl || this.faults.isDown([host.uuid])) {
      return;
    }

    this.#callbacks.report(host.sendCommandUrl, host.secret, {
      vmUuid: change.vmUuid,
      state: change.state,
      reason: change.reason,
    });
  }

  async #receive(request: IncomingMessage, response: ServerResponse) {
    const body = await readBody(request);
    const path = (request.url ?? "/").split("?")[0]!;

    if (path.startsWith("/simulator/")) {
      await handleAdmin(this, this.#options.adminToken, request, body, response);
      return;
    }

    const resourceUuid = header(request, "x-resource-uuid") ?? "";
    const host = this.#hosts.get(resourceUuid);
    const storage = this.#storages.get(resourceUuid);
    const backupStorage = storage?.kind === "backup" ? storage : undefined;
    const secret = host?.secret ?? backupStorage?.secret;

    if (!secret) {
      send(response, 404, {
        success: false,
        error: `no simulated host or backup storage ${JSON.stringify(resourceUuid)}; register it with the simulator first`,
      });
      return;
    }

    if (!UNSIGNED_PATHS.has(path)) {
      const verified = verifyRequest(secret, "POST", request.url ?? "", body, request.headers);

      if (!verified.ok) {
        send(response, 401, { success: false, error: verified.reason });
        return;
      }
    }

    const command = COMMANDS[path];

    if (!command || request.method !== "POST") {
      send(response, 404, { success: false, error: `unknown path ${request.method} ${path}` });
      return;
    }

    let parsed: Body;

    try {
      parsed = body === "" ? {} : (JSON.parse(body) as Body);
    } catch {
      send(response, 400, { success: false, error: "invalid JSON body" });
      return;
    }

    const context = this.#context(host, backupStorage);
    const scope = this.#scope(resourceUuid, parsed);
    const asynchronous = ASYNC_PATHS.has(path);
    const match = this.faults.take(path, scope, asynchronous);

    if (match.outcome?.kind === "host-down") {
      request.socket.destroy();
      return;
    }

    if (match.outcome?.kind === "timeout") {
      this.#held.add(response);
      response.on("close", () => this.#held.delete(response));
      return;
    }

    const run = () => {
      if (match.outcome?.kind === "fail") {
        return { success: false, error: match.outcome.errorText };
      }

      return runCommand(() => command(context, parsed));
    };

    if (!asynchronous) {
      await sleep(match.delayMs);
      send(response, 200, run());
      return;
    }

    this.#runAsync(request, response, secret, scope, run, {
      delayMs: match.delayMs,
      dropCallback: match.outcome?.kind === "drop-callback",
    });
  }

  #runAsync(
    request: IncomingMessage,
    response: ServerResponse,
    secret: string,
    scope: string[],
    run: () => Body,
    options: { delayMs: number; dropCallback: boolean },
  ) {
    const taskUuid = header(request, "taskuuid");
    const callbackUrl = header(request, "callbackurl");

    if (!taskUuid || !callbackUrl || !/^https?:\/\//.test(callbackUrl)) {
      send(response, 400, {
        success: false,
        error: "an asynchronous command needs the taskuuid and callbackurl (http URL) headers",
      });
      return;
    }

    const key = `${scope[0]}:${taskUuid}`;
    const known = this.#tasks.get(key);

    if (known) {
      // As the real agent: a repeat of a finished task re-sends its result, of a running one nothing.
      if (known.result && !known.dropped) {
        this.#callbacks.complete(callbackUrl, secret, taskUuid, known.result);
      }

      send(response, 200, { success: true, submitted: false });
      return;
    }

    const task: Task = { dropped: options.dropCallback };
    this.#remember(key, task);
    send(response, 200, { success: true, submitted: true });

    setTimeout(() => {
      task.result = run();

      if (task.dropped || this.faults.isDown(scope)) {
        this.log.info({ taskUuid }, "callback dropped by an injected fault or a down host");
        return;
      }

      this.#callbacks.complete(callbackUrl, secret, taskUuid, task.result);
    }, options.delayMs);
  }

  #remember(key: string, task: Task) {
    this.#tasks.set(key, task);

    if (this.#tasks.size <= MAX_TASKS) {
      return;
    }

    for (const [oldKey, old] of this.#tasks) {
      if (old.result) {
        this.#tasks.delete(oldKey);
        return;
      }
    }
  }

  /** The resources a command concerns: its target, and the primary storage its `root` names. */
  #scope(resourceUuid: string, body: Body) {
    const scope = [resourceUuid];

    if (typeof body.root === "string") {
      const primary = this.#primaryAt(body.root);

      if (primary) {
        scope.push(primary.uuid);
      }
    }

    return scope;
  }

  #primaryAt(root: string) {
    for (const storage of this.#storages.values()) {
      if (storage.kind === "primary" && storage.url === root) {
        return storage;
      }
    }

    return undefined;
  }

  #context(host: SimHost | undefined, backupStorage: SimStorage | undefined): CommandContext {
    return {
      host,
      backupStorage,
      markers: this.#markers,
      primaryFiles: (root) => {
        const primary = this.#primaryAt(root);

        if (primary) {
          return primary.files;
        }

        if (!host) {
          throw new CommandError(`no simulated primary storage has the path ${root}`);
        }

        let files = host.localFiles.get(root);

        if (!files) {
          files = newPrimaryFiles();
          host.localFiles.set(root, files);
        }

        return files;
      },
      primaryCapacity: (root) => {
        const primary = this.#primaryAt(root);
        // A path that no registered storage owns gets a host-local disk of 1 TiB.
        return primary
          ? { total: primary.totalCapacity, available: primary.availableCapacity }
          : { total: 1024 ** 4, available: 1024 ** 4 };
      },
      findImage: (imageUuid) => {
        for (const storage of this.#storages.values()) {
          const image = storage.images.get(imageUuid);

          if (image) {
            return image;
          }
        }

        return undefined;
      },
    };
  }
}

/** Stores the images a registration lists that the storage does not hold yet. */
function addImages(stored: Map<string, SimImage>, images: StorageRegistration["images"] = []) {
  for (const { imageUuid, url } of images) {
    if (!stored.has(imageUuid)) {
      stored.set(imageUuid, simulatedImage(imageUuid, url));
    }
  }
}

function runCommand(work: () => object): Body {
  try {
    return { success: true, ...work() };
  } catch (error) {
    if (error instanceof CommandError) {
      return { success: false, error: error.message };
    }

    throw error;
  }
}

function header(request: IncomingMessage, name: string) {
  const value = request.headers[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;

      if (size > MAX_BODY_BYTES) {
        request.destroy(new Error(`request body exceeds ${MAX_BODY_BYTES} bytes`));
        return;
      }

      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

function sleep(ms: number) {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
