import type { FastifyInstance } from "fastify";
import { parseMonitoringConfig } from "../monitoring/config.js";
import type { MonitoringConfig } from "../monitoring/types.js";
import type { ServerContext } from "./app.js";

/**
 * Registers `GET /metrics` (Prometheus text format, unsigned so a Prometheus server can scrape
 * it) and the signed `POST /monitoring/config`, when the agent runs a monitor.
 */
export function registerMonitoringRoutes(app: FastifyInstance, context: ServerContext) {
  const monitor = context.monitor;

  if (!monitor) {
    return;
  }

  app.get("/metrics", async (_request, reply) =>
    reply
      .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
      .send(await monitor.metricsText()),
  );

  app.post("/monitoring/config", async (request) => {
    const config = parseMonitoringConfig(request.body as Partial<MonitoringConfig>);
    await monitor.configure(config);
    return { success: true };
  });
}
