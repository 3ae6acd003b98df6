import { createHash } from "node:crypto";
import { ApiError, type ApiRoute, apiRoutes } from "@tstack/api";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Core } from "../core/core.js";
import { newUuid, now, UUID_PATTERN } from "../core/ids.js";
import { failure, JobCancelledError, JobTimeoutError } from "../core/jobs.js";
import type { Caller } from "../identity/sessions.js";
import type { ApiCall, ApiHandler } from "./api.js";
import { BASE_PATH, type GatewayOptions, sendApiError } from "./gateway.js";
import { validate } from "./validation.js";

type Body = Record<string, unknown> | undefined;

/** The `Authorization` header of a session: `OAuth <session uuid>`. */
const SESSION_HEADER = /^OAuth ([0-9a-f]{32})$/;

/** Signal of requests handled at once, because only jobs can be cancelled. */
const NEVER_ABORTED = new AbortController().signal;

/** Registers every declared API, grouping the APIs that share one method and path. */
export function registerApiRoutes(app: FastifyInstance, options: GatewayOptions) {
  const groups = new Map<string, ApiRoute[]>();

  for (const route of apiRoutes) {
    const paths =
      route.kind === "query" && route.resource !== "ApiJob"
        ? [route.path, `${route.path}/{uuid}`]
        : [route.path];

    for (const path of paths) {
      const key = `${route.method} ${path}`;
      groups.set(key, [...(groups.get(key) ?? []), route]);
    }
  }

  for (const [key, routes] of groups) {
    const [method, path] = key.split(" ") as [ApiRoute["method"], string];
    const url = `${BASE_PATH}${path.replace(/\{([^}]+)\}/g, ":$1")}`;
    app.route({
      method,
      url,
      handler: (request, reply) => dispatch(options, routes, request, reply),
    });
  }
}

async function dispatch(
  options: GatewayOptions,
  routes: ApiRoute[],
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const body = request.body as Body;
  const route = pickRoute(routes, body);
  const handler = options.handlers[route.name];

  if (!handler) {
    throw new ApiError("internal", `API ${route.name} is declared but has no handler`);
  }

  const caller =
    authenticateCached(options, route, request) ?? (await authenticate(options, route, request));
  const call = buildCall(options.core, route, caller, request);

  if (route.adminOnly && !caller.isAdmin) {
    throw new ApiError(
      "permissionDenied",
      `${route.name} is an admin API; account ${caller.accountUuid} is not an admin`,
    );
  }

  // Each await costs a microtask even on a value that is ready, so steps that have nothing to do
  // are skipped rather than awaited.
  if (handler.check) {
    await handler.check(options.core, call);
  }

  if (route.kind === "query" || route.kind === "sync") {
    const result = await handler.run(options.core, call);

    if (route.method !== "GET") {
      await auditSync(options.core, route, call);
    }

    return reply.code(200).send(result ?? {});
  }

  return startJob(options, route, handler, call, request, reply);
}

/** Picks the API by the single top-level key of an action body, as ZStack does. */
function pickRoute(routes: ApiRoute[], body: Body): ApiRoute {
  if (routes.length === 1 && routes[0]!.kind !== "action") {
    return routes[0]!;
  }

  const names = routes.map((route) => route.name);
  const keys = Object.keys(body ?? {}).filter((key) => key !== "systemTags" && key !== "userTags");

  if (keys.length !== 1) {
    throw new ApiError(
      "invalidArgument",
      `an action body needs exactly one API key among ${names.join(", ")}; got ${keys.length === 0 ? "none" : keys.join(", ")}`,
    );
  }

  const route = routes.find((candidate) => candidate.name === keys[0]);

  if (!route) {
    throw new ApiError(
      "invalidArgument",
      `unknown action '${keys[0]}' on this path; expected one of ${names.join(", ")}`,
    );
  }

  return route;
}

/** Returns the caller of a public API or of a session in the cache, without a promise. */
function authenticateCached(
  options: GatewayOptions,
  route: ApiRoute,
  request: FastifyRequest,
): Caller | undefined {
  if (route.public) {
    return publicCaller();
  }

  const match = SESSION_HEADER.exec(request.headers.authorization ?? "");
  return match ? options.sessions.cachedCaller(match[1]!) : undefined;
}

function publicCaller(): Caller {
  return { sessionUuid: "", accountUuid: "", userUuid: "", isAdmin: false };
}

async function authenticate(
  options: GatewayOptions,
  route: ApiRoute,
  request: FastifyRequest,
): Promise<Caller> {
  if (route.public) {
    return publicCaller();
  }

  const header = request.headers.authorization;

  if (!header) {
    throw new ApiError(
      "invalidSession",
      "missing header 'Authorization'; send 'Authorization: OAuth <session uuid>' from a login",
    );
  }

  const match = SESSION_HEADER.exec(header.trim());

  if (!match) {
    throw new ApiError(
      "invalidSession",
      "invalid Authorization header; expected 'OAuth <session uuid>' with a 32-hex session uuid",
    );
  }

  return options.sessions.authenticate(match[1]!);
}

function buildCall(core: Core, route: ApiRoute, caller: Caller, request: FastifyRequest): ApiCall {
  const body = request.body as Body;
  const query = request.query as Record<string, string | string[] | undefined>;
  const { params, systemTags, userTags } = readBody(route, body, query);

  return {
    route,
    caller,
    params,
    path: request.params as Record<string, string>,
    query,
    systemTags,
    userTags,
    requestId: request.id,
    clientIp: request.ip,
    signal: NEVER_ABORTED,
    progress: async () => {},
    commit: (work) => core.transact(work),
  };
}

/** Reads `params` (create), the action key's object (action) or the query string (GET, DELETE). */
function readBody(
  route: ApiRoute,
  body: Body,
  _query: Record<string, string | string[] | undefined>,
) {
  if (route.method === "GET" || route.method === "DELETE") {
    if (body !== undefined && Object.keys(body).length > 0) {
      throw new ApiError(
        "invalidArgument",
        `${route.method} ${route.name} takes no body; pass parameters in the query string`,
      );
    }

    return { params: {}, systemTags: [], userTags: [] };
  }

  if (body !== undefined && (typeof body !== "object" || body === null || Array.isArray(body))) {
    throw new ApiError("invalidArgument", `the body of ${route.name} must be a JSON object`);
  }

  const key = route.kind === "create" ? "params" : route.name;
  const allowed = new Set([key, "systemTags", "userTags"]);
  const extra = Object.keys(body ?? {}).filter((name) => !allowed.has(name));

  if (extra.length > 0) {
    throw new ApiError(
      "invalidArgument",
      `unknown top-level field '${extra[0]}' in the body of ${route.name}; expected ${[...allowed].join(", ")}`,
    );
  }

  const value = body?.[key];

  if (
    value !== undefined &&
    value !== null &&
    (typeof value !== "object" || Array.isArray(value))
  ) {
    throw new ApiError(
      "invalidArgument",
      `invalid ${key}: expected a JSON object of ${route.name} parameters, got ${Array.isArray(value) ? "an array" : typeof value}`,
    );
  }

  const inner = { ...((value as Record<string, unknown> | null | undefined) ?? {}) };
  validateTags(body?.systemTags, "systemTags");
  validateTags(body?.userTags, "userTags");

  if (route.params) {
    validate(route.params, inner, key);
  }

  const systemTags = [
    ...((body?.systemTags as string[]) ?? []),
    ...((inner.systemTags as string[]) ?? []),
  ];
  const userTags = [
    ...((body?.userTags as string[]) ?? []),
    ...((inner.userTags as string[]) ?? []),
  ];
  delete inner.systemTags;
  delete inner.userTags;
  return { params: inner, systemTags, userTags };
}

function validateTags(value: unknown, label: string) {
  if (value === undefined) {
    return;
  }

  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is rejected.
  const control = /[\x00-\x08\x0b-\x1f\x7f]/;
  const bad = (tag: unknown) =>
    typeof tag !== "string" || tag.length === 0 || tag.length > 4096 || control.test(tag);

  if (!Array.isArray(value) || value.some(bad)) {
    throw new ApiError(
      "invalidArgument",
      `invalid ${label}: expected an array of non-empty strings of at most 4096 characters without control characters`,
    );
  }
}

async function auditSync(core: Core, route: ApiRoute, call: ApiCall) {
  if (route.method === "GET") {
    return;
  }

  const stamp = now();
  await core.kysely
    .insertInto("audits")
    .values({
      uuid: newUuid(),
      accountUuid: call.caller.accountUuid || null,
      userUuid: call.caller.userUuid || null,
      apiName: route.name,
      resourceUuid: call.path.uuid ?? call.path.sessionUuid ?? null,
      requestId: call.requestId,
      jobUuid: null,
      success: 1,
      error: null,
      clientIp: call.clientIp,
      createDate: stamp,
      finishDate: stamp,
    })
    .execute();
}

const DEFAULT_API_TIMEOUT_MS = 30 * 60 * 1000;
const MAX_API_TIMEOUT_MS = 72 * 60 * 60 * 1000;

async function startJob(
  options: GatewayOptions,
  route: ApiRoute,
  handler: ApiHandler,
  call: ApiCall,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const core = options.core;
  const jobUuid = readJobUuid(request);
  const timeoutMs = readTimeout(request, route);
  const webhookUrl = readWebhook(request);
  const idempotencyKey = readIdempotencyKey(request);
  const requestHash = idempotencyKey ? hashRequest(request) : null;
  const location = jobLocation(request, jobUuid);

  if (idempotencyKey) {
    const replay = await findReplay(core, call.caller.accountUuid, idempotencyKey, requestHash!);

    if (replay) {
      return sendReplay(request, reply, replay);
    }
  }

  const resourceUuid = call.path.uuid ?? (call.params.resourceUuid as string | undefined) ?? null;
  const job = {
    uuid: jobUuid,
    apiName: route.name,
    accountUuid: call.caller.accountUuid,
    userUuid: call.caller.userUuid,
    resourceUuid,
    request: request.body ?? {},
    timeoutMs,
    idempotencyKey,
    requestHash,
    webhookUrl,
  };

  try {
    await core.transact(async (tx) => {
      await tx
        .insertInto("audits")
        .values({
          uuid: newUuid(),
          accountUuid: call.caller.accountUuid,
          userUuid: call.caller.userUuid,
          apiName: route.name,
          resourceUuid,
          requestId: call.requestId,
          jobUuid,
          success: null,
          error: null,
          clientIp: call.clientIp,
          createDate: now(),
          finishDate: null,
        })
        .execute();
    });
    await core.jobs.create(job);
  } catch (error) {
    await core.kysely
      .deleteFrom("audits")
      .where("jobUuid", "=", jobUuid)
      .where("success", "is", null)
      .execute();
    return rejectDuplicate(core, error, call, idempotencyKey, requestHash, request, reply);
  }

  void runJob(core, handler, call, jobUuid, timeoutMs);
  return reply.code(202).send({ location, apiTimeout: timeoutMs });
}

async function rejectDuplicate(
  core: Core,
  error: unknown,
  call: ApiCall,
  key: string | null,
  hash: string | null,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  if (key) {
    const replay = await findReplay(core, call.caller.accountUuid, key, hash!);

    if (replay) {
      return sendReplay(request, reply, replay);
    }
  }

  if (isUniqueViolation(error)) {
    return sendApiError(
      reply,
      new ApiError(
        "invalidArgument",
        `Duplicate job uuid: a job with the X-Job-UUID ${String(request.headers["x-job-uuid"])} already exists; send a new one`,
      ),
    );
  }

  throw error;
}

async function findReplay(core: Core, accountUuid: string, key: string, hash: string) {
  const previous = await core.kysely
    .selectFrom("apiJobs")
    .select(["uuid", "requestHash", "createDate", "deadline"])
    .where("accountUuid", "=", accountUuid)
    .where("idempotencyKey", "=", key)
    .executeTakeFirst();

  if (!previous) {
    return undefined;
  }

  if (previous.requestHash !== hash) {
    throw new ApiError(
      "conflict",
      `Idempotency-Key '${key}' was already used for a different request (job ${previous.uuid}); use a new key for a new request`,
    );
  }

  return previous;
}

/**
 * Sends the first job of a replayed Idempotency-Key with its timeout. Timeouts are whole seconds,
 * so rounding removes the milliseconds between the job's createDate and deadline stamps.
 */
function sendReplay(
  request: FastifyRequest,
  reply: FastifyReply,
  job: { uuid: string; createDate: string; deadline: string },
) {
  const timeoutMs = Date.parse(job.deadline) - Date.parse(job.createDate);
  return reply.code(202).send({
    location: jobLocation(request, job.uuid),
    apiTimeout: Math.round(timeoutMs / 1000) * 1000,
  });
}

function isUniqueViolation(error: unknown) {
  const code = (error as { code?: string }).code;
  return (
    code === "23505" ||
    code === "SQLITE_CONSTRAINT_PRIMARYKEY" ||
    code === "SQLITE_CONSTRAINT_UNIQUE"
  );
}

/** Runs the handler in its resource's queue and ends the job with its result or error. */
async function runJob(
  core: Core,
  handler: ApiHandler,
  call: ApiCall,
  jobUuid: string,
  timeoutMs: number,
) {
  const signal = core.jobs.track(jobUuid, timeoutMs);
  const log = core.log.child({ jobUuid, api: call.route.name, reqId: call.requestId });
  const queueKey =
    handler.queueKey?.(call) ??
    call.path.uuid ??
    (call.params.resourceUuid as string | undefined) ??
    jobUuid;
  let ended = false;

  const jobCall: ApiCall = {
    ...call,
    jobUuid,
    signal,
    progress: (percent, text) => core.jobs.progress(jobUuid, percent, text),
    commit: (work) =>
      core.transact(async (tx) => {
        const body = await work(tx);
        ended = await core.jobs.finish(tx, jobUuid, { status: 200, body: body ?? {} });
        return body;
      }),
  };

  signal.addEventListener("abort", () => void endWithAbort(core, jobUuid, signal.reason), {
    once: true,
  });

  try {
    const body = await core.queues.run(`resource:${queueKey}`, async () => {
      signal.throwIfAborted();
      return handler.run(core, jobCall);
    });

    if (!ended) {
      await core.transact((tx) => core.jobs.finish(tx, jobUuid, { status: 200, body: body ?? {} }));
    }
  } catch (error) {
    const apiError = toApiError(error);

    if (apiError.status >= 500 && apiError.kind === "internal") {
      log.error({ err: error }, "API job failed with an unexpected error");
    } else {
      log.info({ code: apiError.code, details: apiError.details }, "API job failed");
    }

    await core.transact((tx) => core.jobs.finish(tx, jobUuid, failure(apiError.toBody())));
  } finally {
    core.jobs.untrack(jobUuid);
  }
}

async function endWithAbort(core: Core, jobUuid: string, reason: unknown) {
  await core.transact((tx) => core.jobs.finish(tx, jobUuid, failure(toApiError(reason).toBody())));
  core.jobs.wake(jobUuid);
}

/** Turns anything a handler throws into an ApiError, keeping the cause's text. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) {
    return error;
  }

  if (error instanceof JobTimeoutError) {
    return new ApiError(
      "timeout",
      error.message,
      "raise the timeout with the X-API-Timeout header (seconds) if the operation needs longer",
    );
  }

  if (error instanceof JobCancelledError) {
    return new ApiError("cancelled", error.message);
  }

  const cause = (error as { cause?: unknown }).cause;

  if (cause instanceof JobTimeoutError || cause instanceof JobCancelledError) {
    return toApiError(cause);
  }

  if (cause instanceof ApiError) {
    return new ApiError(cause.kind, (error as Error).message, cause.elaboration, cause.toBody());
  }

  return new ApiError("internal", error instanceof Error ? error.message : String(error));
}

function readJobUuid(request: FastifyRequest) {
  const header = request.headers["x-job-uuid"];

  if (header === undefined) {
    return newUuid();
  }

  if (typeof header !== "string" || !UUID_PATTERN.test(header)) {
    throw new ApiError(
      "invalidArgument",
      `invalid X-Job-UUID '${String(header)}': expected 32 lower-case hex characters`,
    );
  }

  return header;
}

function readTimeout(request: FastifyRequest, route: ApiRoute) {
  const header = request.headers["x-api-timeout"];

  if (header === undefined) {
    return route.timeoutMs ?? DEFAULT_API_TIMEOUT_MS;
  }

  const seconds = Number(header);

  // Digits only, because Number() also reads "1e3" and "0x10" as whole numbers.
  if (
    typeof header !== "string" ||
    !/^[0-9]+$/.test(header) ||
    seconds < 1 ||
    seconds * 1000 > MAX_API_TIMEOUT_MS
  ) {
    throw new ApiError(
      "invalidArgument",
      `invalid X-API-Timeout '${String(header)}': expected whole seconds from 1 to ${MAX_API_TIMEOUT_MS / 1000}`,
    );
  }

  return seconds * 1000;
}

function readWebhook(request: FastifyRequest) {
  const header = request.headers["x-web-hook"];

  if (header === undefined) {
    return null;
  }

  if (typeof header !== "string" || !/^https?:\/\/[^\s]+$/.test(header) || header.length > 2048) {
    throw new ApiError(
      "invalidArgument",
      `invalid X-Web-Hook '${String(header)}': expected an http or https URL`,
    );
  }

  return header;
}

function readIdempotencyKey(request: FastifyRequest) {
  const header = request.headers["idempotency-key"];

  if (header === undefined) {
    return null;
  }

  if (typeof header !== "string" || header.length === 0 || header.length > 255) {
    throw new ApiError("invalidArgument", "invalid Idempotency-Key: expected 1 to 255 characters");
  }

  return header;
}

function hashRequest(request: FastifyRequest) {
  const text = `${request.method}\n${request.url}\n${JSON.stringify(request.body ?? null)}`;
  return createHash("sha256").update(text).digest("hex");
}

function jobLocation(request: FastifyRequest, jobUuid: string) {
  const host = request.headers.host ?? `${request.hostname}`;
  return `${request.protocol}://${host}${BASE_PATH}/api-jobs/${jobUuid}`;
}
