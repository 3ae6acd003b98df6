import { arch, totalmem } from "node:os";
import { ApiError } from "@tstack/api";
import type { Core } from "../../core/core.js";
import { emitEvent } from "../../core/events.js";
import { now } from "../../core/ids.js";
import type { Step } from "../../core/workflow.js";
import type { AgentClient, AgentTarget } from "../../drivers/agent-client.js";
import { run } from "../../drivers/host-tools.js";
import {
  registerSimulatorHost,
  SIMULATOR,
  simulatorHostTarget,
  simulatorStorageTarget,
  unregisterFromSimulator,
} from "../../simulator/targets.js";
import { agentBundle } from "./bundle.js";
import { withHostSession } from "./host-ssh.js";
import { isLocalAddress, runningAgentPid, startLocalAgent, stopLocalAgent } from "./local.js";
import { installRemotePackages, missingTools, remotePreflight } from "./remote.js";
import { deployRemoteAgent, stopRemoteAgent } from "./remote-agent.js";

/** State of one connect run, persisted between steps. */
export interface ConnectData {
  hostUuid: string;
  jobUuid?: string;
  /** The agent process this run started, so a failed add can stop it again. */
  startedPid?: number;
  /** Whether the host is reached over SSH rather than being this machine. */
  remote?: boolean;
  /** Whether this run started the agent on a remote host. */
  startedRemote?: boolean;
  /** Whether the host is a simulator host, which needs no checks, packages or agent. */
  simulated?: boolean;
  /** Whether this run registered the host with the simulator, so a failed add removes it. */
  registeredSimulated?: boolean;
}

const HOST_PACKAGES: Record<string, string> = {
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  dnsmasq: "dnsmasq-base",
  nft: "nftables",
  ip: "iproute2",
};

/** Loads a host's agent target from its row; the secret is decrypted here only. */
export async function agentTarget(core: Core, hostUuid: string): Promise<AgentTarget> {
  const host = await core.kysely
    .selectFrom("hosts")
    .select(["uuid", "managementIp", "agentPort", "agentSecret", "hypervisorType"])
    .where("uuid", "=", hostUuid)
    .executeTakeFirst();

  if (!host) {
    const storage = await simulatorStorageTarget(core, hostUuid);

    if (storage) {
      return storage;
    }

    throw new ApiError("notFound", `host ${hostUuid} was not found`);
  }

  if (host.hypervisorType === SIMULATOR) {
    return simulatorHostTarget(core, host);
  }

  return {
    hostUuid: host.uuid,
    managementIp: host.managementIp,
    agentPort: host.agentPort,
    secret: core.secrets.open(host.agentSecret),
  };
}

/** Sets a host's connection status and emits `/host/status/change` when it changes. */
export async function setHostStatus(
  core: Core,
  hostUuid: string,
  status: string,
  lastError: string | null,
) {
  await core.transact(async (tx) => {
    const host = await tx
      .selectFrom("hosts")
      .select(["status", "accountUuid"])
      .where("uuid", "=", hostUuid)
      .executeTakeFirst();

    if (!host) {
      return;
    }

    await tx
      .updateTable("hosts")
      .set({ status, lastError, lastOpDate: now() })
      .where("uuid", "=", hostUuid)
      .execute();

    if (host.status !== status) {
      await emitEvent(tx, "/host/status/change", {
        resourceUuid: hostUuid,
        accountUuid: host.accountUuid,
        content: { hostUuid, oldStatus: host.status, newStatus: status, reason: lastError },
      });
    }
  });
}

/** Builds the connect workflow's steps: checks, packages, agent deployment, then the agent handshake. */
export function connectSteps(core: Core, agents: AgentClient): Step<ConnectData>[] {
  const progress = (data: ConnectData, text: string) => {
    if (data.jobUuid) {
      void core.jobs.progress(data.jobUuid, 0, text);
    }
  };

  const host = async (data: ConnectData) =>
    core.kysely
      .selectFrom("hosts")
      .selectAll()
      .where("uuid", "=", data.hostUuid)
      .executeTakeFirstOrThrow();

  return [
    {
      name: "check-host",
      async run(data) {
        progress(data, "checking that the host is reachable");
        const row = await host(data);
        data.simulated = row.hypervisorType === SIMULATOR;

        if (data.simulated) {
          return;
        }

        data.remote = !isLocalAddress(row.managementIp);

        if (data.remote) {
          progress(data, `logging in to ${row.managementIp} over SSH`);
          await withHostSession(core, data.hostUuid, (session) =>
            session.check("a test command", "true"),
          );
        }
      },
    },
    {
      name: "preflight",
      async run(data) {
        if (data.simulated) {
          return;
        }

        progress(data, "running preflight checks");

        if (data.remote) {
          await withHostSession(core, data.hostUuid, remotePreflight);
          return;
        }

        if (arch() !== "x64") {
          throw new ApiError(
            "operationFailed",
            `host architecture ${arch()} is not supported; tstack runs VMs on x86_64 hosts`,
          );
        }

        if (totalmem() < 1024 ** 3) {
          throw new ApiError(
            "operationFailed",
            `host has ${totalmem()} bytes of memory; at least 1 GiB is needed`,
          );
        }
      },
    },
    {
      name: "install-packages",
      async run(data) {
        if (data.simulated) {
          return;
        }

        progress(data, "checking host packages");

        if (data.remote) {
          await withHostSession(core, data.hostUuid, async (session) => {
            const missing = await missingTools(session);

            if (missing.length > 0) {
              progress(data, `installing packages for ${missing.join(", ")}`);
              await installRemotePackages(session, missing);
            }
          });
          return;
        }

        const missing: string[] = [];

        for (const [tool, pkg] of Object.entries(HOST_PACKAGES)) {
          const found = await run("which", [tool]).then(
            () => true,
            () => false,
          );

          if (!found) {
            missing.push(pkg);
          }
        }

        if (missing.length > 0) {
          progress(data, `installing ${missing.join(", ")}`);
          await run(
            "apt-get",
            ["install", "-y", "-q", "--no-install-recommends", ...missing],
            600_000,
          );
        }
      },
    },
    {
      name: "deploy-agent",
      async run(data) {
        if (data.simulated) {
          progress(data, "registering the host with the simulator");
          data.registeredSimulated = await registerSimulatorHost(core, data.hostUuid);
          return;
        }

        progress(data, "starting the agent");
        const row = await host(data);
        const dataDir = core.config.get("host", "agent.dataDir");

        if (data.remote) {
          progress(data, "copying the agent to the host");
          const bundle = await agentBundle(core.dataDir);
          const outcome = await withHostSession(core, data.hostUuid, (session) =>
            deployRemoteAgent(session, {
              dataDir,
              listen: `${row.managementIp}:${row.agentPort}`,
              secret: core.secrets.open(row.agentSecret),
              bundle,
            }),
          );
          data.startedRemote = outcome.started;
          return;
        }

        if (runningAgentPid(dataDir)) {
          stopLocalAgent(dataDir);
          await new Promise((resolve) => setTimeout(resolve, 300));
        }

        data.startedPid = startLocalAgent({
          dataDir,
          listen: `${row.managementIp}:${row.agentPort}`,
          secret: core.secrets.open(row.agentSecret),
        });
      },
      async rollback(data) {
        if (data.registeredSimulated) {
          await unregisterFromSimulator(core, data.hostUuid, "host");
          return;
        }

        const dataDir = core.config.get("host", "agent.dataDir");

        if (data.startedRemote) {
          await withHostSession(core, data.hostUuid, (session) =>
            stopRemoteAgent(session, dataDir),
          );
          return;
        }

        if (data.startedPid && runningAgentPid(dataDir) === data.startedPid) {
          stopLocalAgent(dataDir);
        }
      },
    },
    {
      name: "echo",
      async run(data) {
        progress(data, "waiting for the agent to answer");
        const target = await agentTarget(core, data.hostUuid);
        await waitForEcho(agents, target);
      },
    },
    {
      name: "connect",
      async run(data) {
        progress(data, "connecting the agent");
        const target = await agentTarget(core, data.hostUuid);
        const base = await agents.managementUrl(target);
        await agents.call(target, "/host/connect", {
          hostUuid: data.hostUuid,
          sendCommandUrl: `${base}/zstack/asyncrest/sendcommand/${data.hostUuid}`,
        });
      },
    },
    {
      name: "collect-facts",
      async run(data) {
        progress(data, "collecting host facts and capacity");
        const target = await agentTarget(core, data.hostUuid);
        const facts = await agents.call<Record<string, unknown>>(target, "/host/facts", {});
        const capacity = await agents.call<{
          cpuNum: number;
          totalMemory: number;
          availableMemory?: number;
        }>(target, "/host/capacity", {});
        await saveFactsAndCapacity(core, data.hostUuid, facts, capacity);
      },
    },
  ];
}

async function waitForEcho(agents: AgentClient, target: AgentTarget) {
  const deadline = Date.now() + 30_000;
  let last: unknown;

  while (Date.now() < deadline) {
    try {
      await agents.call(target, "/host/echo", {}, 2000);
      return;
    } catch (error) {
      last = error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  throw new ApiError(
    "operationFailed",
    `the agent on ${target.managementIp}:${target.agentPort} did not answer within 30 s: ${String((last as Error)?.message ?? last)}`,
    "see agent.log in the agent's data directory",
  );
}

/** Stores facts and recomputes capacity totals; VMs already placed keep their reservations. */
async function saveFactsAndCapacity(
  core: Core,
  hostUuid: string,
  facts: Record<string, unknown>,
  capacity: { cpuNum: number; totalMemory: number; availableMemory?: number },
) {
  const ratio = core.config.number("host", "cpu.overProvisioning.ratio");
  const reserved = core.config.number("host", "reservedMemory");
  const totalCpu = Math.floor(capacity.cpuNum * ratio);
  const totalMemory = Math.max(0, capacity.totalMemory - reserved);
  const accelerator = facts.accel === "kvm" ? "kvm" : "tcg";
  const architecture = "x86_64";

  await core.transact(async (tx) => {
    await tx
      .updateTable("hosts")
      .set({ facts: JSON.stringify(facts), accelerator, architecture, lastOpDate: now() })
      .where("uuid", "=", hostUuid)
      .execute();
    const existing = await tx
      .selectFrom("hostCapacities")
      .select("uuid")
      .where("uuid", "=", hostUuid)
      .executeTakeFirst();
    // Used capacity is recomputed from the VMs placed on the host, so reservations that a crash
    // cut short can never leave the host over-booked or leaking capacity.
    const used = await tx
      .selectFrom("vmInstances")
      .select((eb) => [
        eb.fn.coalesce(eb.fn.sum<number>("cpuNum"), eb.lit(0)).as("cpu"),
        eb.fn.coalesce(eb.fn.sum<number>("memorySize"), eb.lit(0)).as("memory"),
      ])
      .where("hostUuid", "=", hostUuid)
      .executeTakeFirst();
    const usedCpu = Number(used?.cpu ?? 0);
    const usedMemory = Number(used?.memory ?? 0);
    const row = {
      totalCpu,
      availableCpu: totalCpu - usedCpu,
      cpuNum: capacity.cpuNum,
      totalMemory,
      availableMemory: totalMemory - usedMemory,
      totalPhysicalMemory: capacity.totalMemory,
      availablePhysicalMemory: capacity.availableMemory ?? capacity.totalMemory,
    };

    if (existing) {
      await tx.updateTable("hostCapacities").set(row).where("uuid", "=", hostUuid).execute();
    } else {
      await tx
        .insertInto("hostCapacities")
        .values({ uuid: hostUuid, ...row })
        .execute();
    }
  });
}
