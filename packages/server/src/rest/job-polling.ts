import { ApiError } from "@tstack/api";
import type { FastifyInstance, FastifyReply } from "fastify";
import { UUID_PATTERN } from "../core/ids.js";
import { BASE_PATH, type GatewayOptions } from "./gateway.js";

/** Maximum `waitSeconds` of a long poll. */
const MAX_WAIT_SECONDS = 60;

/**
 * `GET /api-jobs/{uuid}`: 202 while running, 200 with the result, 503 with the error, 404 once
 * expired. The job uuid is a capability, so polling needs no session (ZStack's Python SDK polls
 * without one); with a session, a normal account only sees its own jobs. `?waitSeconds=N` (a
 * tstack extension) holds a 202 for up to N seconds until the job ends, so a client needs one
 * request where it would otherwise poll every few milliseconds.
 */
export function registerJobPolling(app: FastifyInstance, options: GatewayOptions) {
  const { core } = options;

  app.get<{ Params: { uuid: string }; Querystring: { waitSeconds?: string } }>(
    `${BASE_PATH}/api-jobs/:uuid`,
    async (request, reply) => {
      const { uuid } = request.params;

      if (!UUID_PATTERN.test(uuid)) {
        throw new ApiError(
          "invalidArgument",
          `invalid job uuid '${uuid}': expected 32 lower-case hex characters`,
        );
      }

      const waitMs = waitSecondsOf(request.query.waitSeconds) * 1000;
      let job = await readJob(core, uuid);

      if (job?.state === "Running" && waitMs > 0) {
        if (!(await visible(options, request.headers.authorization, job.accountUuid))) {
          return reply.code(404).type("text/plain").send("the job has been expired");
        }

        await core.jobs.waitForEnd(uuid, waitMs);
        job = await readJob(core, uuid);
      }

      return sendJob(options, request.headers.authorization, reply, job);
    },
  );
}

function waitSecondsOf(text: string | undefined) {
  if (text === undefined) {
    return 0;
  }

  const seconds = Number(text);

  if (!Number.isInteger(seconds) || seconds < 0 || seconds > MAX_WAIT_SECONDS) {
    throw new ApiError(
      "invalidArgument",
      `invalid waitSeconds '${text}': expected an integer from 0 to ${MAX_WAIT_SECONDS}`,
    );
  }

  return seconds;
}

function readJob(core: GatewayOptions["core"], uuid: string) {
  return core.kysely
    .selectFrom("apiJobs")
    .select(["state", "result", "httpStatus", "finishDate", "accountUuid"])
    .where("uuid", "=", uuid)
    .executeTakeFirst();
}

async function sendJob(
  options: GatewayOptions,
  authorization: string | undefined,
  reply: FastifyReply,
  job: Awaited<ReturnType<typeof readJob>>,
) {
  const { core } = options;
  const expiredMs = core.config.number("rest", "completedApi.expiredPeriod") * 1000;
  const expired = job?.finishDate && Date.parse(job.finishDate) < Date.now() - expiredMs;

  if (!job || expired || !(await visible(options, authorization, job.accountUuid))) {
    return reply.code(404).type("text/plain").send("the job has been expired");
  }

  if (job.state === "Running") {
    return reply.code(202).send({});
  }

  return reply.code(job.httpStatus ?? 200).send(job.result ?? "{}");
}

async function visible(
  options: GatewayOptions,
  authorization: string | undefined,
  owner: string | null,
) {
  const match = authorization ? /^OAuth ([0-9a-f]{32})$/.exec(authorization.trim()) : null;

  if (!match) {
    return true;
  }

  try {
    const caller = await options.sessions.authenticate(match[1]!);
    return caller.isAdmin || caller.accountUuid === owner;
  } catch {
    return true;
  }
}
