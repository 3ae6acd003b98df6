import { request } from "node:http";
import { signRequest } from "@tstack/agent/auth";
import type { Fault, FaultSpec } from "./faults.js";
import type { HostRegistration, NodeState, StorageRegistration } from "./state.js";

/** A VM state change that a simulated host reports as if the guest did it by itself. */
export interface VmStateChange {
  hostUuid: string;
  vmUuid: string;
  state: "Running" | "Paused" | "Stopped" | "Crashed";
  reason: string;
}

/**
 * The simulator's admin channel: the same calls in process (`Simulator`) or over HTTP signed
 * with the admin token (`HttpSimulatorControl`).
 */
export interface SimulatorControl {
  /** Registers a host, or updates the secret and capacity of a registered one and keeps its VMs. */
  registerHost(host: HostRegistration): Promise<void>;
  /** Forgets a host and everything on it; returns whether it was registered. */
  unregisterHost(uuid: string): Promise<boolean>;
  registerStorage(storage: StorageRegistration): Promise<void>;
  unregisterStorage(uuid: string): Promise<boolean>;
  /** State of one host or storage, or of all of them when `uuid` is unset. */
  state(uuid?: string): Promise<NodeState[]>;
  createFault(spec: FaultSpec): Promise<Fault>;
  listFaults(): Promise<Fault[]>;
  deleteFault(uuid: string): Promise<boolean>;
  /** Deletes every fault; returns how many there were. */
  clearFaults(): Promise<number>;
  /** Changes a VM's state on its host and sends the report to the management node. */
  reportVmState(change: VmStateChange): Promise<void>;
}

/** Admin paths and the methods they call, shared by the server side and the client. */
export const ADMIN_PATHS = {
  registerHost: "/simulator/hosts/register",
  unregisterHost: "/simulator/hosts/unregister",
  registerStorage: "/simulator/storages/register",
  unregisterStorage: "/simulator/storages/unregister",
  state: "/simulator/state",
  createFault: "/simulator/faults/create",
  listFaults: "/simulator/faults/list",
  deleteFault: "/simulator/faults/delete",
  clearFaults: "/simulator/faults/clear",
  reportVmState: "/simulator/vms/report",
} as const;

/** An admin request that the simulator rejected, with its HTTP status. */
export class SimulatorAdminError extends Error {
  override name = "SimulatorAdminError";

  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** The admin channel of a `tstack-simulator` process, reached over HTTP. */
export class HttpSimulatorControl implements SimulatorControl {
  readonly url: URL;

  constructor(
    url: string,
    private readonly adminToken: string,
  ) {
    this.url = new URL(url);
  }

  registerHost(host: HostRegistration) {
    return this.#post<void>(ADMIN_PATHS.registerHost, host);
  }

  async unregisterHost(uuid: string) {
    return (await this.#post<{ removed: boolean }>(ADMIN_PATHS.unregisterHost, { uuid })).removed;
  }

  registerStorage(storage: StorageRegistration) {
    return this.#post<void>(ADMIN_PATHS.registerStorage, storage);
  }

  async unregisterStorage(uuid: string) {
    const reply = await this.#post<{ removed: boolean }>(ADMIN_PATHS.unregisterStorage, { uuid });
    return reply.removed;
  }

  async state(uuid?: string) {
    return (await this.#post<{ nodes: NodeState[] }>(ADMIN_PATHS.state, { uuid })).nodes;
  }

  async createFault(spec: FaultSpec) {
    return (await this.#post<{ fault: Fault }>(ADMIN_PATHS.createFault, spec)).fault;
  }

  async listFaults() {
    return (await this.#post<{ faults: Fault[] }>(ADMIN_PATHS.listFaults, {})).faults;
  }

  async deleteFault(uuid: string) {
    return (await this.#post<{ removed: boolean }>(ADMIN_PATHS.deleteFault, { uuid })).removed;
  }

  async clearFaults() {
    return (await this.#post<{ removed: number }>(ADMIN_PATHS.clearFaults, {})).removed;
  }

  reportVmState(change: VmStateChange) {
    return this.#post<void>(ADMIN_PATHS.reportVmState, change);
  }

  #post<T>(path: string, body: unknown): Promise<T> {
    const text = JSON.stringify(body ?? {});
    const headers = {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(text)),
      ...signRequest(this.adminToken, "POST", path, text),
    };

    return new Promise<T>((resolve, reject) => {
      const req = request(
        {
          host: this.url.hostname,
          port: this.url.port,
          path,
          method: "POST",
          headers,
          timeout: 30_000,
        },
        (response) => {
          let data = "";
          response.setEncoding("utf8");
          response.on("data", (chunk) => {
            data += chunk;
          });
          response.on("end", () => {
            const reply = data ? (JSON.parse(data) as { error?: string }) : {};

            if ((response.statusCode ?? 500) >= 300) {
              reject(
                new SimulatorAdminError(
                  `simulator at ${this.url.origin} rejected ${path} with HTTP ${response.statusCode}: ${reply.error ?? data.slice(0, 300)}`,
                  response.statusCode ?? 500,
                ),
              );
              return;
            }

            resolve(reply as T);
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error("no response within 30 s")));
      req.on("error", (error) =>
        reject(
          new Error(
            `failed to reach the simulator at ${this.url.origin} for ${path}: ${error.message}`,
          ),
        ),
      );
      req.end(text);
    });
  }
}
