import type { Core } from "../../core/core.js";
import { Rounds } from "../../core/rounds.js";
import type { AgentClient } from "../../drivers/agent-client.js";
import { SIMULATOR } from "../../simulator/targets.js";
import { AGENT_HYPERVISORS } from "../containers.js";
import { agentTarget, setHostStatus } from "./connect.js";

const MAX_RECONNECT_BACKOFF_MS = 300_000;

/**
 * Hosts a ping round handles at once, as in ZStack's HostTrackImpl. Pinging every host at once
 * would open one connection per host at the same moment.
 */
export const PING_PARALLELISM = 100;

/**
 * Pings every connected host each `host.ping.interval` seconds. After `host.ping.maxFailure`
 * failed tries in a row a host becomes Disconnected, and, unless switched off, is reconnected
 * with exponential backoff. Hosts in Maintenance are not pinged.
 */
export class HostTracker {
  private readonly backoff = new Map<string, { attempts: number; nextAt: number }>();
  private readonly rounds: Rounds;

  constructor(
    private readonly core: Core,
    private readonly agents: AgentClient,
    private readonly reconnect: (hostUuid: string) => Promise<void>,
  ) {
    this.rounds = new Rounds(
      () => core.config.number("host", "ping.interval") * 1000,
      (signal) => this.pingAll(signal),
      core.log,
      "host ping round",
    );
  }

  start() {
    this.rounds.start();
    this.core.config.onChange("host", "ping.interval", () => this.rounds.restartWait());
  }

  stop() {
    return this.rounds.stop();
  }

  /**
   * Runs one round: pings connected hosts and retries disconnected ones whose backoff has passed,
   * PING_PARALLELISM hosts at a time. Once `signal` aborts, no further host is started.
   */
  async pingAll(signal?: AbortSignal) {
    const hosts = await this.core.kysely
      .selectFrom("hosts")
      .select(["uuid", "status", "state"])
      .where("hypervisorType", "in", [...AGENT_HYPERVISORS, SIMULATOR])
      .execute();

    let next = 0;
    const worker = async () => {
      while (next < hosts.length && !signal?.aborted) {
        await this.track(hosts[next++]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PING_PARALLELISM, hosts.length) }, worker));
  }

  private async track(host: { uuid: string; status: string; state: string }) {
    if (host.state === "Maintenance" || host.state === "PreMaintenance") {
      return;
    }

    if (host.status === "Connected") {
      await this.ping(host.uuid);
    } else if (host.status === "Disconnected") {
      await this.maybeReconnect(host.uuid);
    }
  }

  private async ping(hostUuid: string) {
    const tries = this.core.config.number("host", "ping.maxFailure");
    const timeoutMs = this.core.config.number("host", "ping.timeout") * 1000;
    let lastError = "";

    for (let attempt = 0; attempt < tries; attempt++) {
      try {
        const target = await agentTarget(this.core, hostUuid);
        const reply = await this.agents.call<{ hostUuid?: string }>(
          target,
          "/host/ping",
          {},
          timeoutMs,
        );

        if (reply.hostUuid && reply.hostUuid !== hostUuid) {
          lastError = `the agent reports host ${reply.hostUuid}; it was restarted or taken over`;
          break;
        }

        if (!reply.hostUuid) {
          lastError = "the agent lost its connection state (restarted); reconnecting";
          break;
        }

        return;
      } catch (error) {
        lastError = (error as Error).message;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }

    this.core.log.warn({ hostUuid, err: lastError }, "host ping failed; host is Disconnected");
    await setHostStatus(this.core, hostUuid, "Disconnected", lastError);
    await this.maybeReconnect(hostUuid);
  }

  private async maybeReconnect(hostUuid: string) {
    if (!this.core.config.boolean("host", "connection.autoReconnectOnError")) {
      return;
    }

    const state = this.backoff.get(hostUuid) ?? { attempts: 0, nextAt: 0 };

    if (Date.now() < state.nextAt) {
      return;
    }

    try {
      await this.reconnect(hostUuid);
      this.backoff.delete(hostUuid);
      this.core.log.info({ hostUuid }, "host reconnected");
    } catch (error) {
      const attempts = state.attempts + 1;
      const delay = Math.min(1000 * 2 ** attempts, MAX_RECONNECT_BACKOFF_MS);
      this.backoff.set(hostUuid, { attempts, nextAt: Date.now() + delay });
      this.core.log.warn(
        { hostUuid, attempts, retryInMs: delay, err: (error as Error).message },
        "host reconnect failed",
      );
    }
  }
}
