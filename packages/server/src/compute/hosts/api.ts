import { ApiError } from "@tstack/api";
import type { Core } from "../../core/core.js";
import { emitEvent } from "../../core/events.js";
import { newUuid, now } from "../../core/ids.js";
import { WorkflowError } from "../../core/workflow.js";
import type { AgentClient } from "../../drivers/agent-client.js";
import {
  changeStateHandler,
  deleteMode,
  deleteResourceRow,
  insertResource,
  inventoryOf,
  loadResource,
  queryHandler,
  updateHandler,
} from "../../resources/crud.js";
import type { ApiCall, ApiHandler, ApiHandlers } from "../../rest/api.js";
import { SIMULATOR, unregisterFromSimulator } from "../../simulator/targets.js";
import { AGENT_HYPERVISORS } from "../containers.js";
import type { ConnectData } from "./connect.js";
import { setHostStatus } from "./connect.js";
import { withHostSession } from "./host-ssh.js";
import { isLocalAddress, stopLocalAgent } from "./local.js";
import { stopRemoteAgent } from "./remote-agent.js";

const HOST_STATES: Record<string, Record<string, string>> = {
  Enabled: { enable: "Enabled", disable: "Disabled", maintain: "Maintenance" },
  Disabled: { enable: "Enabled", disable: "Disabled", maintain: "Maintenance" },
  PreMaintenance: { enable: "Enabled", disable: "Disabled" },
  Maintenance: { enable: "Enabled", disable: "Disabled" },
};

/** Runs the connect workflow of a host and records the outcome in its status. */
export async function connectHost(core: Core, hostUuid: string, call?: ApiCall) {
  await setHostStatus(core, hostUuid, "Connecting", null);

  try {
    await core.queues.run(`host-connect:${hostUuid}`, () =>
      core.workflows.run<ConnectData>(
        "connect-host",
        { hostUuid, jobUuid: call?.jobUuid },
        { jobUuid: call?.jobUuid, signal: call?.signal },
      ),
    );
  } catch (error) {
    const cause = error instanceof WorkflowError ? error.cause : error;
    // lastError is all an operator sees of a failed background reconnect, so it carries the advice.
    const reason =
      cause instanceof ApiError && cause.elaboration
        ? `${cause.message}; ${cause.elaboration}`
        : cause instanceof Error
          ? cause.message
          : String(cause);
    await setHostStatus(core, hostUuid, "Disconnected", reason);
    throw error instanceof WorkflowError && error.cause instanceof ApiError
      ? error.cause
      : new ApiError(
          "operationFailed",
          `failed to connect host ${hostUuid}: ${reason}`,
          "fix the cause, then call reconnectHost",
        );
  }

  await setHostStatus(core, hostUuid, "Connected", null);
  await core.bus.publish("host.connected", { hostUuid });
}

function addKvmHost(): ApiHandler {
  return {
    async check(core, call) {
      const cluster = await core.kysely
        .selectFrom("clusters")
        .select(["uuid", "hypervisorType"])
        .where("uuid", "=", String(call.params.clusterUuid))
        .executeTakeFirst();

      if (!cluster) {
        throw new ApiError(
          "invalidArgument",
          `params.clusterUuid: cluster ${String(call.params.clusterUuid)} was not found`,
        );
      }

      if (!AGENT_HYPERVISORS.includes(cluster.hypervisorType)) {
        throw new ApiError(
          "invalidArgument",
          `params.clusterUuid: cluster ${cluster.uuid} is for ${cluster.hypervisorType} hosts; add agent hosts to a KVM or Container cluster`,
        );
      }

      const remote = !isLocalAddress(String(call.params.managementIp));

      if (remote && call.params.password === undefined && call.params.sshKey === undefined) {
        throw new ApiError(
          "invalidArgument",
          `params.password: host ${String(call.params.managementIp)} is reached over SSH and needs a password or an sshKey`,
          "give password or sshKey (a private key in OpenSSH or PEM format)",
        );
      }

      const taken = await core.kysely
        .selectFrom("hosts")
        .select("uuid")
        .where("managementIp", "=", String(call.params.managementIp))
        .executeTakeFirst();

      if (taken) {
        throw new ApiError(
          "invalidArgument",
          `params.managementIp: host ${taken.uuid} already uses ${String(call.params.managementIp)}`,
        );
      }
    },
    async run(core, call) {
      const hostUuid = (call.params.resourceUuid as string | undefined) ?? newUuid();
      await core.transact(async (tx) => {
        const cluster = await tx
          .selectFrom("clusters")
          .select(["zoneUuid", "hypervisorType"])
          .where("uuid", "=", String(call.params.clusterUuid))
          .executeTakeFirstOrThrow();
        const credential = call.params.password ?? call.params.sshKey;
        await insertResource(
          tx,
          core,
          "Host",
          {
            uuid: hostUuid,
            name: call.params.name,
            description: call.params.description ?? null,
            zoneUuid: cluster.zoneUuid,
            clusterUuid: call.params.clusterUuid,
            managementIp: call.params.managementIp,
            // The same agent runs VMs and containers; the cluster says which this host serves.
            hypervisorType: cluster.hypervisorType,
            state: "Enabled",
            status: "Connecting",
            architecture: null,
            username: call.params.username,
            sshPort: call.params.sshPort ?? 22,
            credential: credential
              ? core.secrets.seal(
                  JSON.stringify({ password: call.params.password, sshKey: call.params.sshKey }),
                )
              : null,
            agentSecret: core.secrets.seal(newUuid() + newUuid()),
            agentPort: core.config.number("host", "agent.port"),
            facts: null,
            accelerator: null,
            lastError: null,
          },
          { ...call, params: { ...call.params, resourceUuid: hostUuid } },
        );
      });

      await connectHost(core, hostUuid, call);
      return { inventory: await inventoryOf(core.kysely, "Host", hostUuid) };
    },
  };
}

/**
 * Stops a remote host's agent before its row goes. A host that cannot be reached is still
 * deleted, as in ZStack, because the operator wants it gone. The warning names what may be left.
 */
async function stopAgentOverSsh(core: Core, hostUuid: string, dataDir: string) {
  try {
    await withHostSession(core, hostUuid, (session) => stopRemoteAgent(session, dataDir));
  } catch (error) {
    core.log.warn(
      { hostUuid, err: (error as Error).message },
      "could not stop the agent of a deleted host; stop tstack-agent on the host by hand",
    );
  }
}

/**
 * Enables, disables or puts a host into maintenance. Until live migration exists, maintenance
 * stops the host's VMs (host.maintenance.policy StopVm) or is rejected while VMs run
 * (RejectWithRunningVm).
 */
function changeHostState(): ApiHandler {
  const generic = changeStateHandler("Host", HOST_STATES);

  return {
    check: generic.check,
    async run(core, call) {
      if (call.params.stateEvent !== "maintain") {
        return generic.run(core, call);
      }

      const hostUuid = call.path.uuid!;
      const vms = await core.kysely
        .selectFrom("vmInstances")
        .select(["uuid", "name"])
        .where("hostUuid", "=", hostUuid)
        .execute();
      const policy = core.config.get("host", "maintenance.policy");

      if (vms.length > 0 && policy === "RejectWithRunningVm") {
        const list = vms.map((vm) => `${vm.name} (${vm.uuid})`).join(", ");
        throw new ApiError(
          "invalidState",
          `host ${hostUuid} still runs ${vms.length} VM(s): ${list}; stop them first, or set host.maintenance.policy to StopVm`,
        );
      }

      for (const vm of vms) {
        await call.progress(0, `stopping VM ${vm.name} for maintenance`);
        await core.queues.run(`resource:${vm.uuid}`, () =>
          core.workflows.run("stop-vm", { vmUuid: vm.uuid, force: false }),
        );
      }

      return generic.run(core, call);
    },
  };
}

/**
 * Rejects deleting a host that an image store lives on (both modes), or that runs VMs
 * (Permissive mode; Enforcing stops them first).
 */
async function rejectHostDependents(
  core: Core,
  hostUuid: string,
  mode: "Permissive" | "Enforcing",
) {
  const stores = await core.kysely
    .selectFrom("backupStorages")
    .select("uuid")
    .where("hostUuid", "=", hostUuid)
    .execute();

  if (stores.length > 0) {
    throw new ApiError(
      "operationFailed",
      `host ${hostUuid} holds backup storage ${stores.map((store) => store.uuid).join(", ")}; delete the backup storage first`,
    );
  }

  const vms = await core.kysely
    .selectFrom("vmInstances")
    .select(["uuid", "name"])
    .where("hostUuid", "=", hostUuid)
    .execute();

  if (vms.length > 0 && mode === "Permissive") {
    const list = vms
      .slice(0, 10)
      .map((vm) => `${vm.name} (${vm.uuid})`)
      .join(", ");
    throw new ApiError(
      "operationFailed",
      `host ${hostUuid} runs ${vms.length} VM(s): ${list}; stop them first, or delete with deleteMode=Enforcing to stop them`,
    );
  }
}

export function hostHandlers(_agents: AgentClient): ApiHandlers {
  return {
    addKVMHost: addKvmHost(),
    queryHost: queryHandler("Host"),
    updateHost: updateHandler("Host"),
    changeHostState: changeHostState(),
    reconnectHost: {
      check: async (core, call) =>
        void (await loadResource(core.kysely, "Host", call.path.uuid!, call.caller)),
      async run(core, call) {
        await connectHost(core, call.path.uuid!, call);
        return { inventory: await inventoryOf(core.kysely, "Host", call.path.uuid!) };
      },
    },
    deleteHost: {
      async check(core, call) {
        const mode = deleteMode(call);
        await loadResource(core.kysely, "Host", call.path.uuid!, call.caller);
        await rejectHostDependents(core, call.path.uuid!, mode);
      },
      async run(core, call) {
        await rejectHostDependents(core, call.path.uuid!, deleteMode(call));
        const running = await core.kysely
          .selectFrom("vmInstances")
          .select(["uuid", "name"])
          .where("hostUuid", "=", call.path.uuid!)
          .execute();

        for (const vm of running) {
          await call.progress(0, `stopping VM ${vm.name} before deleting its host`);
          await core.queues.run(`resource:${vm.uuid}`, () =>
            core.workflows.run("stop-vm", { vmUuid: vm.uuid, force: true }),
          );
        }

        const dataDir = core.config.get("host", "agent.dataDir");
        const target = await loadResource(core.kysely, "Host", call.path.uuid!, call.caller);
        const simulated = target.hypervisorType === SIMULATOR;
        const remote = !simulated && !isLocalAddress(String(target.managementIp));

        if (remote) {
          await stopAgentOverSsh(core, String(target.uuid), dataDir);
        }

        if (simulated) {
          await unregisterFromSimulator(core, String(target.uuid), "host");
        }

        const result = await call.commit(async (tx) => {
          const host = await loadResource(tx, "Host", call.path.uuid!, call.caller);
          await tx.deleteFrom("hostCapacities").where("uuid", "=", String(host.uuid)).execute();
          await tx.deleteFrom("simulatorHosts").where("uuid", "=", String(host.uuid)).execute();
          await deleteResourceRow(tx, "Host", host);

          if (!remote && !simulated) {
            // The agent was started by us on this machine; stop it so nothing keeps running unowned.
            stopLocalAgent(dataDir);
          }

          await emitEvent(tx, "/host/delete", {
            resourceUuid: String(host.uuid),
            accountUuid: String(host.accountUuid),
            content: { hostUuid: host.uuid, at: now() },
          });
          return {};
        });
        await core.bus.publish("host.deleted", { hostUuid: String(target.uuid) });
        return result;
      },
    },
    getCpuMemoryCapacity: {
      async run(core, call) {
        const list = (name: string) => {
          const value = call.query[name];
          return value === undefined ? [] : Array.isArray(value) ? value : [value];
        };
        let query = core.kysely
          .selectFrom("hostCapacities")
          .innerJoin("hosts", "hosts.uuid", "hostCapacities.uuid");

        for (const [param, column] of [
          ["zoneUuids", "hosts.zoneUuid"],
          ["clusterUuids", "hosts.clusterUuid"],
          ["hostUuids", "hosts.uuid"],
        ] as const) {
          const values = list(param);

          if (values.length > 0) {
            query = query.where(column, "in", values);
          }
        }

        const row = await query
          .select((eb) => [
            eb.fn.coalesce(eb.fn.sum<number>("hostCapacities.totalCpu"), eb.lit(0)).as("totalCpu"),
            eb.fn
              .coalesce(eb.fn.sum<number>("hostCapacities.availableCpu"), eb.lit(0))
              .as("availableCpu"),
            eb.fn
              .coalesce(eb.fn.sum<number>("hostCapacities.totalMemory"), eb.lit(0))
              .as("totalMemory"),
            eb.fn
              .coalesce(eb.fn.sum<number>("hostCapacities.availableMemory"), eb.lit(0))
              .as("availableMemory"),
          ])
          .executeTakeFirst();
        return {
          totalCpu: Number(row?.totalCpu ?? 0),
          availableCpu: Number(row?.availableCpu ?? 0),
          totalMemory: Number(row?.totalMemory ?? 0),
          availableMemory: Number(row?.availableMemory ?? 0),
        };
      },
    },
  };
}
