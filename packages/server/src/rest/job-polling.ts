import { ApiError } from "@tstack/api";
import type { FastifyInstance } from "fastify";
import { UUID_PATTERN } from "../core/ids.js";
import { BASE_PATH, type GatewayOptions } from "./gateway.js";

/**
 * `GET /api-jobs/{uuid}`: 202 while running, 200 with the result, 503 with the error, 404 once
 * expired. The job uuid is a capability, so polling needs no session (ZStack's Python SDK polls
 * without one); with a session, a normal account only sees its own jobs.
 */
export function registerJobPolling(app: FastifyInstance, options: GatewayOptions) {
  const { core } = options;

  app.get<{ Params: { uuid: string } }>(`${BASE_PATH}/api-jobs/:uuid`, async (request, reply) => {
    const { uuid } = request.params;

    if (!UUID_PATTERN.test(uuid)) {
      throw new ApiError(
        "invalidArgument",
        `invalid job uuid '${uuid}': expected 32 lower-case hex characters`,
      );
    }

    const job = await core.kysely
      .selectFrom("apiJobs")
      .select(["state", "result", "httpStatus", "finishDate", "accountUuid"])
      .where("uuid", "=", uuid)
      .executeTakeFirst();
    const expiredMs = core.config.number("rest", "completedApi.expiredPeriod") * 1000;
    const expired = job?.finishDate && Date.parse(job.finishDate) < Date.now() - expiredMs;

    if (
      !job ||
      expired ||
      !(await visible(options, request.headers.authorization, job.accountUuid))
    ) {
      return reply.code(404).type("text/plain").send("the job has been expired");
    }

    if (job.state === "Running") {
      return reply.code(202).send({});
    }

    return reply.code(job.httpStatus ?? 200).send(job.result ?? "{}");
  });
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
