import { randomBytes } from "node:crypto";
import { createServer, maxHeaderSize, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { ApiError, type ApiRoute, apiRoutes } from "@tstack/api";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerFactory,
  LogController,
} from "fastify";
import type { Logger } from "pino";
import type { Core } from "../core/core.js";
import type { SessionService } from "../identity/sessions.js";
import type { ApiHandlers } from "./api.js";
import { registerApiRoutes } from "./dispatch.js";
import { registerEventStream } from "./event-stream.js";
import { registerJobPolling } from "./job-polling.js";
import type { Metrics } from "./metrics.js";
import { openApiDocument } from "./openapi.js";
import { lazyChildLoggerFactory } from "./request-logger.js";
import { withTurnBudget } from "./turn-budget.js";

export const BASE_PATH = "/zstack/v1";
const BODY_LIMIT = 1024 * 1024;
/**
 * Deepest nesting of objects and arrays a body may have. The bodies of the declared APIs nest
 * less than 10 deep, and code that recurses over a body, such as JSON.stringify, overflowed the
 * stack at 10000.
 */
const MAX_BODY_DEPTH = 64;
// Request time per turn of the event loop, which accepts one new connection per turn.
// NOTE: only a synthetic server compared 2 ms with 1 and 3 ms. read-scale ran with 2 ms alone.
const TURN_BUDGET_MS = 2;

export interface GatewayOptions {
  core: Core;
  sessions: SessionService;
  handlers: ApiHandlers;
  metrics: Metrics;
  version: string;
  isReady(): boolean;
  extraRoutes?: Array<(app: FastifyInstance) => void>;
}

/** Creates the HTTP server as Fastify would, with requests run under a turn budget. */
const serverFactory: FastifyServerFactory = (handler) => {
  const server = createServer(withTurnBudget(handler, TURN_BUDGET_MS));
  // Fastify's defaults, which it sets only on the servers it creates itself.
  server.keepAliveTimeout = 72_000;
  server.requestTimeout = 0;
  return server;
};

/** Builds the Fastify app that speaks the ZStack v1 REST contract. */
export function buildGateway(options: GatewayOptions): FastifyInstance {
  const { core, metrics } = options;
  const app = Fastify({
    loggerInstance: core.log as FastifyBaseLogger,
    // Requests are logged once, in the onResponse hook, with the level their status deserves.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyChildLoggerFactory,
    bodyLimit: BODY_LIMIT,
    genReqId: requestIdGenerator(),
    requestIdHeader: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 512 },
    serverFactory,
    clientErrorHandler: sendClientError,
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, parseJson);

  app.addHook("onResponse", (request, reply, done) => {
    observe(core.log, request, reply, metrics);
    done();
  });

  // Until start-up recovery has finished, only readiness, metrics and agent callbacks are
  // served. The hook takes a callback, because an async hook costs a promise per request.
  app.addHook("onRequest", (request, reply, done) => {
    const path = request.url;

    if (
      !options.isReady() &&
      path.startsWith(BASE_PATH) &&
      !path.startsWith(`${BASE_PATH}/management-nodes/ready`)
    ) {
      sendApiError(
        reply,
        new ApiError(
          "notReady",
          "the management node is still starting and recovering unfinished work; retry in a moment",
        ),
      );
      return;
    }

    done();
  });

  app.setErrorHandler((error, request, reply) => sendError(error, request, reply));
  app.setNotFoundHandler((request, reply) => notFound(request, reply));

  app.get(`${BASE_PATH}/management-nodes/ready`, async (_request, reply) => {
    if (!options.isReady()) {
      return sendApiError(
        reply,
        new ApiError("notReady", "the management node is still starting; retry in a moment"),
      );
    }

    return { ready: true, version: options.version };
  });

  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.get(`${BASE_PATH}/openapi.json`, async () => openApiDocument(apiRoutes, options.version));

  registerJobPolling(app, options);
  registerEventStream(app, options);
  registerApiRoutes(app, options);

  for (const addRoutes of options.extraRoutes ?? []) {
    addRoutes(app);
  }

  return app;
}

/**
 * Returns a generator of 32-hex request ids: a random prefix drawn once per process and a
 * counter, so ids stay unique across restarts without drawing random bytes per request.
 */
function requestIdGenerator() {
  const prefix = randomBytes(10).toString("hex");
  let counter = 0;
  return () => {
    counter++;
    return prefix + counter.toString(16).padStart(12, "0");
  };
}

function parseJson(
  request: FastifyRequest,
  body: string | Buffer,
  done: (error: Error | null, value?: unknown) => void,
) {
  const text = typeof body === "string" ? body : body.toString("utf8");

  if (text.trim() === "") {
    done(null, undefined);
    return;
  }

  let value: unknown;

  try {
    value = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    done(
      new ApiError(
        "invalidArgument",
        `malformed JSON body in ${request.method} ${request.url}: ${reason}`,
      ),
    );
    return;
  }

  if (exceedsDepth(value, MAX_BODY_DEPTH)) {
    done(
      new ApiError(
        "invalidArgument",
        `JSON body in ${request.method} ${request.url} nests objects and arrays more than ${MAX_BODY_DEPTH} deep; flatten it`,
      ),
    );
    return;
  }

  done(null, value);
}

/** Returns whether objects and arrays nest deeper than `limit`, walking them without recursion. */
function exceedsDepth(root: unknown, limit: number) {
  const pending: Array<[unknown, number]> = [[root, 0]];

  while (pending.length > 0) {
    const [value, depth] = pending.pop()!;

    if (value === null || typeof value !== "object") {
      continue;
    }

    if (depth >= limit) {
      return true;
    }

    for (const child of Object.values(value)) {
      pending.push([child, depth + 1]);
    }
  }

  return false;
}

/** Records a finished request in the metrics and logs it, with its id, through the root logger. */
function observe(log: Logger, request: FastifyRequest, reply: FastifyReply, metrics: Metrics) {
  const route = request.routeOptions.url ?? "unmatched";
  metrics.recordRequest(request.method, route, reply.statusCode, reply.elapsedTime / 1000);

  if (reply.statusCode < 400 && !log.isLevelEnabled("debug")) {
    return;
  }

  const fields = {
    reqId: request.id,
    method: request.method,
    url: request.url,
    status: reply.statusCode,
    ms: Math.round(reply.elapsedTime),
  };

  if (reply.statusCode >= 500 && reply.statusCode !== 503) {
    log.error(fields, "request failed");
  } else if (reply.statusCode >= 400) {
    log.info(fields, "request rejected");
  } else {
    log.debug(fields, "request completed");
  }
}

/** Maps any error to ZStack's error body; this is the one place errors become HTTP. */
export function sendError(error: unknown, request: FastifyRequest, reply: FastifyReply) {
  if (error instanceof ApiError) {
    return sendApiError(reply, error);
  }

  const fastifyError = error as { code?: string; statusCode?: number; message?: string };

  if (fastifyError.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
    return sendApiError(
      reply,
      new ApiError(
        "invalidArgument",
        `request body is larger than the limit of ${BODY_LIMIT} bytes`,
      ),
      413,
    );
  }

  if (fastifyError.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
    return sendApiError(
      reply,
      new ApiError(
        "invalidArgument",
        `unsupported content type '${request.headers["content-type"]}'; send application/json`,
      ),
      415,
    );
  }

  if (fastifyError.statusCode && fastifyError.statusCode < 500) {
    return sendApiError(
      reply,
      new ApiError("invalidArgument", fastifyError.message ?? "bad request"),
      fastifyError.statusCode,
    );
  }

  request.log.error({ err: error, reqId: request.id }, "unexpected error in request handler");
  return sendApiError(
    reply,
    new ApiError(
      "internal",
      `internal error while handling request ${request.id}; the management node log has the details`,
    ),
  );
}

/**
 * Sends ZStack's error body for a request that Node's HTTP parser rejected before Fastify saw it,
 * such as one whose headers and URL exceed the header size limit, in place of Fastify's body.
 */
function sendClientError(this: FastifyInstance, error: Error & { code?: string }, socket: Socket) {
  if (error.code === "ECONNRESET" || socket.destroyed) {
    return;
  }

  const [status, details] = describeClientError(error);
  const body = JSON.stringify({ error: new ApiError("invalidArgument", details).toBody() });
  this.log.debug({ err: error }, "rejected a malformed HTTP request");

  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`,
    );
  }

  socket.destroy(error);
}

function describeClientError(error: Error & { code?: string }): [number, string] {
  if (error.code === "HPE_HEADER_OVERFLOW") {
    return [
      431,
      `request headers and URL are larger than the limit of ${maxHeaderSize} bytes; send fewer or shorter q= conditions or headers`,
    ];
  }

  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    return [408, "the request was not received in time; send it again"];
  }

  return [
    400,
    `malformed HTTP request (${error.code ?? error.message}); check the request line and headers`,
  ];
}

export function sendApiError(reply: FastifyReply, error: ApiError, status = error.status) {
  return reply.code(status).send({ error: error.toBody() });
}

function notFound(request: FastifyRequest, reply: FastifyReply) {
  const path = request.url.split("?")[0] ?? "";
  const allowed = allowedMethods(path);

  if (allowed.length > 0) {
    reply.header("allow", allowed.join(", "));
    return sendApiError(
      reply,
      new ApiError(
        "invalidArgument",
        `method ${request.method} is not allowed on ${path}; allowed: ${allowed.join(", ")}`,
      ),
      405,
    );
  }

  return sendApiError(
    reply,
    new ApiError(
      "notFound",
      `no API at ${request.method} ${path}; see ${BASE_PATH}/openapi.json for the routes`,
    ),
  );
}

const routePatterns = buildRoutePatterns(apiRoutes);

function buildRoutePatterns(routes: ApiRoute[]) {
  const patterns: Array<{ method: string; pattern: RegExp }> = [];

  for (const route of routes) {
    const paths = route.kind === "query" ? [route.path, `${route.path}/{uuid}`] : [route.path];

    for (const path of paths) {
      const source = `${BASE_PATH}${path}`
        .replace(/[.+?^$()|[\]\\]/g, "\\$&")
        .replace(/\{[^}]+\}/g, "[^/]+");
      patterns.push({ method: route.method, pattern: new RegExp(`^${source}/?$`) });
    }
  }

  patterns.push({ method: "GET", pattern: new RegExp(`^${BASE_PATH}/api-jobs/[^/]+/?$`) });
  return patterns;
}

function allowedMethods(path: string) {
  const methods = new Set(
    routePatterns.filter((entry) => entry.pattern.test(path)).map((entry) => entry.method),
  );
  return [...methods].sort();
}
