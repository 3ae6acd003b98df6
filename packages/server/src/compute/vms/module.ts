import type { FastifyInstance } from "fastify";
import type { Core } from "../../core/core.js";
import { now } from "../../core/ids.js";
import type { Module } from "../../modules.js";
import { vmHandlers } from "./api.js";
import { defineVmConfig } from "./config.js";
import { registerVmWorkflows } from "./lifecycle.js";
import { loadVm } from "./state.js";
import { VmTracer } from "./tracer.js";
import "./resource.js";

const EXPUNGE_SWEEP_MS = 60_000;

/** VMs: lifecycle APIs and workflows, state tracing, and expunging destroyed VMs when due. */
export function vmModule(): Module {
  let core: Core | undefined;
  let tracer: VmTracer | undefined;
  let sweeper: NodeJS.Timeout | undefined;

  return {
    handlers: vmHandlers,
    register(registered) {
      core = registered;
      defineVmConfig(registered);
      registerVmWorkflows(registered);
      tracer = new VmTracer(registered);
    },
    routes(app: FastifyInstance) {
      tracer!.routes(app);
    },
    start() {
      tracer!.start();
      sweeper = setInterval(() => void expungeDue(core!), EXPUNGE_SWEEP_MS);
      sweeper.unref();
    },
    async stop() {
      clearInterval(sweeper);
      await tracer?.stop();
    },
  };
}

/** Expunges destroyed VMs whose expunge date has passed. */
async function expungeDue(core: Core) {
  const due = await core.kysely
    .selectFrom("vmInstances")
    .select("uuid")
    .where("state", "=", "Destroyed")
    .where("expungeDate", "<=", now())
    .execute();

  for (const vm of due) {
    await core.queues
      .run(`resource:${vm.uuid}`, async () => {
        // Stored with the workflow row, so a rollback after a crash can restore it.
        const { state } = await loadVm(core.kysely, vm.uuid);
        return core.workflows.run("expunge-vm", { vmUuid: vm.uuid, fromState: state });
      })
      .catch((error) =>
        core.log.warn(
          { err: error, vmUuid: vm.uuid },
          "expunging a destroyed VM failed; retrying later",
        ),
      );
  }
}
