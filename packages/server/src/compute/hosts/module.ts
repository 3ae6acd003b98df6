import type { FastifyInstance } from "fastify";
import type { Core } from "../../core/core.js";
import type { AgentClient } from "../../drivers/agent-client.js";
import type { Module } from "../../modules.js";
import { connectHost, hostHandlers } from "./api.js";
import { replayCleanupsOnConnect, retryCleanupsPeriodically } from "./cleanups.js";
import { defineHostConfig } from "./config.js";
import { type ConnectData, connectSteps } from "./connect.js";
import { HostTracker } from "./tracker.js";
import "./resource.js";

/** Hosts: adding, connecting, pinging and reconnecting KVM hosts through their agents. */
export function hostModule(): Module & { agents(): AgentClient } {
  let agents: AgentClient | undefined;
  let tracker: HostTracker | undefined;
  let core: Core | undefined;
  let unsubscribe: (() => void) | undefined;
  let stopRetries: (() => void) | undefined;

  const module = {
    handlers: {},
    agents: () => agents!,
    register(registered: Core) {
      core = registered;
      agents = registered.agents;
      defineHostConfig(registered);
      registered.workflows.register<ConnectData>({
        name: "connect-host",
        steps: connectSteps(registered, agents),
      });
      Object.assign(module.handlers, hostHandlers(agents));
    },
    start() {
      tracker = new HostTracker(core!, agents!, (hostUuid) => connectHost(core!, hostUuid));
      tracker.start();
      unsubscribe = replayCleanupsOnConnect(core!);
      stopRetries = retryCleanupsPeriodically(core!);
    },
    routes(app: FastifyInstance) {
      registerAgentRoutes(app, () => agents!);
    },
    async stop() {
      unsubscribe?.();
      stopRetries?.();
      await tracker?.stop();
    },
  };
  return module;
}

/** Routes the agents call: async command results and reports of events they did not cause. */
function registerAgentRoutes(app: FastifyInstance, agents: () => AgentClient) {
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "string" }, (_request, body, done) =>
      done(null, body),
    );

    scope.post("/zstack/asyncrest/callback", async (request, reply) => {
      const taskUuid = request.headers.taskuuid;

      if (typeof taskUuid !== "string") {
        return reply.code(400).send({ error: "missing taskuuid header" });
      }

      const outcome = agents().complete(
        taskUuid,
        String(request.body ?? ""),
        request.headers,
        "/zstack/asyncrest/callback",
      );
      return reply
        .code(outcome.status)
        .send(outcome.status === 200 ? {} : { error: outcome.reason });
    });
  });
}
