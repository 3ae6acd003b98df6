import { verifyRequest } from "@tstack/agent/auth";
import type { FastifyInstance } from "fastify";
import type { Core } from "../../core/core.js";
import { emitEvent } from "../../core/events.js";
import { UUID_PATTERN } from "../../core/ids.js";
import { Rounds } from "../../core/rounds.js";
import { SIMULATOR } from "../../simulator/targets.js";
import { AGENT_HYPERVISORS } from "../containers.js";
import { agentTarget } from "../hosts/connect.js";
import { INTERMEDIATE_STATES, type VmState } from "./states.js";
import { releaseFromHost } from "./workflows.js";

/** VM states an agent may report, mapped to the VM states tstack records. */
const REPORTED: Record<string, VmState> = {
  Running: "Running",
  Paused: "Paused",
  Stopped: "Stopped",
  Crashed: "Crashed",
};

/**
 * Keeps VM states true to what hosts run: applies the agent's reports of events it did not
 * cause, and compares each host's VMs with the database on connect and periodically. VMs with an
 * operation in flight are left alone, since that operation sets their state itself.
 */
export class VmTracer {
  private readonly strangers = new Set<string>();
  private readonly rounds: Rounds;

  constructor(private readonly core: Core) {
    this.rounds = new Rounds(
      () => core.config.number("host", "ping.interval") * 1000,
      (signal) => this.syncAll(signal),
      core.log,
      "VM sync round",
    );
  }

  start() {
    this.core.bus.subscribe("host.connected", async (message) => {
      await this.sync((message.body as { hostUuid: string }).hostUuid).catch((error) =>
        this.core.log.warn({ err: error }, "VM sync after connect failed"),
      );
    });
    this.rounds.start();
    this.core.config.onChange("host", "ping.interval", () => this.rounds.restartWait());
  }

  stop() {
    return this.rounds.stop();
  }

  private busy(vmUuid: string, state: string) {
    return (
      this.core.queues.isBusy(`resource:${vmUuid}`) ||
      INTERMEDIATE_STATES.includes(state as VmState)
    );
  }

  /**
   * Applies one observed state of a VM on a host. With `seenState`, the state the database had
   * before the host was asked, a VM whose state changed since is left for the next sync.
   */
  async apply(
    hostUuid: string,
    vmUuid: string,
    observed: VmState,
    reason: string,
    seenState?: string,
  ) {
    const vm = await this.core.kysely
      .selectFrom("vmInstances")
      .selectAll()
      .where("uuid", "=", vmUuid)
      .executeTakeFirst();

    if (!vm) {
      if (!this.strangers.has(vmUuid)) {
        this.strangers.add(vmUuid);
        this.core.log.warn(
          { hostUuid, vmUuid },
          "host runs a VM the database does not know; leaving it running",
        );
        await this.core.transact((tx) =>
          emitEvent(tx, "/vm/stranger", {
            resourceUuid: vmUuid,
            content: { vmUuid, hostUuid, state: observed },
          }),
        );
      }

      return;
    }

    if (
      vm.hostUuid !== hostUuid ||
      vm.state === observed ||
      (seenState !== undefined && vm.state !== seenState) ||
      this.busy(vmUuid, vm.state)
    ) {
      return;
    }

    this.core.log.info(
      { vmUuid, hostUuid, from: vm.state, to: observed, reason },
      "VM state changed on its host",
    );

    if (observed === "Stopped" || observed === "Crashed") {
      await this.core.queues.run(`resource:${vmUuid}`, () =>
        releaseFromHost(this.core, vmUuid, observed),
      );
      return;
    }

    const { setVmState } = await import("./state.js");
    await this.core.transact(async (tx) => setVmState(tx, vm, observed));
  }

  /** Compares the VMs a host runs with the database. */
  async sync(hostUuid: string) {
    // The database is read before the agent, so that a VM whose start finishes in between is
    // seen as Starting (and left alone), not as Running while the agent's list lacks it.
    const known = await this.core.kysely
      .selectFrom("vmInstances")
      .select(["uuid", "state"])
      .where("hostUuid", "=", hostUuid)
      .execute();
    const target = await agentTarget(this.core, hostUuid);
    const reply = await this.core.agents.call<{ states: Record<string, string> }>(
      target,
      "/vm/vmsync",
      {},
    );

    for (const vm of known) {
      const state = reply.states[vm.uuid];
      const observed = state ? (REPORTED[state] ?? "Unknown") : "Stopped";

      // `apply` leaves a VM alone whose state is already the observed one; skipping it here
      // saves a read per VM on every periodic sync.
      if (observed === vm.state) {
        continue;
      }

      await this.apply(
        hostUuid,
        vm.uuid,
        observed,
        state ? "vm sync" : "the host no longer runs it",
        vm.state,
      );
    }

    const knownUuids = new Set(known.map((vm) => vm.uuid));

    for (const [vmUuid, state] of Object.entries(reply.states)) {
      if (!knownUuids.has(vmUuid)) {
        await this.apply(hostUuid, vmUuid, REPORTED[state] ?? "Unknown", "vm sync");
      }
    }
  }

  private async syncAll(signal: AbortSignal) {
    const hosts = await this.core.kysely
      .selectFrom("hosts")
      .select("uuid")
      .where("status", "=", "Connected")
      .where("hypervisorType", "in", [...AGENT_HYPERVISORS, SIMULATOR])
      .execute();

    for (const host of hosts) {
      if (signal.aborted) {
        return;
      }

      await this.sync(host.uuid).catch((error) =>
        this.core.log.warn({ err: error, hostUuid: host.uuid }, "VM sync failed"),
      );
    }
  }

  /** Registers the route agents post their reports to. The URL names the host whose secret signs the report. */
  routes(app: FastifyInstance) {
    app.register(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser("*", { parseAs: "string" }, (_request, body, done) =>
        done(null, body),
      );

      scope.post<{ Params: { hostUuid: string } }>(
        "/zstack/asyncrest/sendcommand/:hostUuid",
        async (request, reply) => {
          const { hostUuid } = request.params;

          if (!UUID_PATTERN.test(hostUuid)) {
            return reply.code(400).send({ error: "invalid host uuid" });
          }

          const target = await agentTarget(this.core, hostUuid).catch(() => undefined);
          const body = String(request.body ?? "");

          if (
            !target ||
            !verifyRequest(
              target.secret,
              "POST",
              `/zstack/asyncrest/sendcommand/${hostUuid}`,
              body,
              request.headers,
            ).ok
          ) {
            return reply.code(401).send({ error: "unknown host or bad signature" });
          }

          const report = JSON.parse(body) as { vmUuid?: string; state?: string; reason?: string };

          if (
            request.headers.commandpath === "/vm/report/state" &&
            report.vmUuid &&
            report.state &&
            REPORTED[report.state]
          ) {
            await this.apply(
              hostUuid,
              report.vmUuid,
              REPORTED[report.state]!,
              report.reason ?? "reported by the agent",
            );
          }

          return {};
        },
      );
    });
  }
}
