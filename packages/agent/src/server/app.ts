import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
} from "fastify";
import type { Logger } from "pino";
import { verifyRequest } from "../auth.js";
import type { ContainerDriver } from "../container/index.js";
import type { HostFacts } from "../host/facts.js";
import type { Monitor } from "../monitoring/monitor.js";
import { CALLBACK_URL_HEADER, TASK_UUID_HEADER } from "../protocol.js";
import { ValidationError } from "../validate.js";
import type { QemuDriver } from "../vm/index.js";
import { registerHostRoutes } from "./host-routes.js";
import { registerMonitoringRoutes } from "./monitoring-routes.js";
import { registerNetworkRoutes } from "./network-routes.js";
import type { Reporter } from "./reporter.js";
import { registerStorageRoutes } from "./storage-routes.js";
import { TaskRunner } from "./tasks.js";
import { registerVmRoutes } from "./vm-routes.js";
import { registerVolumeRoutes } from "./volume-routes.js";

/** Everything the command server needs. */
export interface AgentServerOptions {
  dataDir: string;
  /** Returns the per-host secret; read from `<data-dir>/host-secret` by main. */
  secret: () => string;
  driver: QemuDriver;
  /** Runs the VMs whose start command has `hypervisorType: "Container"`; unset, they are rejected. */
  containers?: ContainerDriver;
  reporter: Reporter;
  logger: Logger;
  /** Collects the host facts; called once, then cached. */
  collectFacts: () => Promise<HostFacts>;
  /** Delay before the first callback retry in ms. */
  callbackBackoffMs?: number;
  /** Metrics collector; `/metrics` and `/monitoring/config` exist only when it is set. */
  monitor?: Monitor;
}

/** Shared state of the route modules. */
export interface ServerContext extends AgentServerOptions {
  tasks: TaskRunner;
}

// Paths served without a signature: the management node polls echo before it has
// written the secret of a freshly deployed agent, and a Prometheus server scrapes metrics
// without knowing the host secret.
const UNSIGNED_PATHS = new Set(["/host/echo", "/metrics"]);

declare module "fastify" {
  interface FastifyRequest {
    rawBody: string;
  }
}

/** Hides the values of `token` query parameters, which grant image downloads and uploads. */
export function redactedUrl(url: string) {
  return url.replace(/([?&]token=)[^&]*/g, "$1[redacted]");
}

/** Serializes a request for the log without the secrets its URL may carry. */
function requestForLog(request: { method: string; url: string }) {
  return { method: request.method, url: redactedUrl(request.url) };
}

/** Builds the agent's command server; routes are all POSTs of JSON. */
export function buildServer(options: AgentServerOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger.child(
      {},
      { serializers: { req: requestForLog } },
    ) as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
  });
  const tasks = new TaskRunner({
    secret: options.secret,
    logger: options.logger,
    backoffMs: options.callbackBackoffMs,
  });
  const context: ServerContext = { ...options, tasks };

  // The raw text is kept because the signature covers the exact bytes that were sent.
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    request.rawBody = body as string;

    try {
      done(null, body === "" ? {} : JSON.parse(body as string));
    } catch {
      done(new ValidationError("invalid JSON body"), undefined);
    }
  });

  app.addHook("preHandler", async (request, reply) => {
    if (UNSIGNED_PATHS.has(request.url)) {
      return;
    }

    const body = request.rawBody ?? "";
    const result = verifyRequest(
      options.secret(),
      request.method,
      request.url,
      body,
      request.headers,
    );

    if (!result.ok) {
      request.log.info(
        { url: redactedUrl(request.url), reason: result.reason },
        "rejected unsigned request",
      );
      return reply.code(401).send({ success: false, error: result.reason });
    }
  });

  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const status = error instanceof ValidationError ? 400 : (error.statusCode ?? 500);

    if (status >= 500) {
      request.log.error({ err: error }, "request failed");
    }

    return reply.code(status).send({ success: false, error: error.message });
  });

  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send({ success: false, error: `unknown path ${request.method} ${request.url}` }),
  );

  registerHostRoutes(app, context);
  registerVmRoutes(app, context);
  registerNetworkRoutes(app, context);
  registerStorageRoutes(app, context);
  registerVolumeRoutes(app, context);
  registerMonitoringRoutes(app, context);
  return app;
}

/** Reads the async task headers of a request, or throws a ValidationError naming the missing one. */
export function taskHeaders(request: FastifyRequest) {
  const taskUuid = request.headers[TASK_UUID_HEADER];
  const callbackUrl = request.headers[CALLBACK_URL_HEADER];

  if (typeof taskUuid !== "string" || taskUuid === "") {
    throw new ValidationError(`missing ${TASK_UUID_HEADER} header on an asynchronous command`);
  }

  if (typeof callbackUrl !== "string" || !/^https?:\/\//.test(callbackUrl)) {
    throw new ValidationError(
      `missing or invalid ${CALLBACK_URL_HEADER} header: expected an http URL`,
    );
  }

  return { taskUuid, callbackUrl };
}
