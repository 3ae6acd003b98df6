import { ApiError } from "@tstack/api";
import type { FastifyInstance } from "fastify";
import type { CanonicalEvent } from "../core/events.js";
import type { Caller } from "../identity/sessions.js";
import { BASE_PATH, type GatewayOptions } from "./gateway.js";

/** Events read from the table per query of a replay. */
const REPLAY_PAGE = 1000;
const HEARTBEAT_MS = 15_000;

/**
 * `GET /events`: canonical events as server-sent events. `Last-Event-ID` (or `?lastEventId=`)
 * replays what was missed from the event table before live events follow. Normal accounts get
 * only events about their own resources.
 */
export function registerEventStream(app: FastifyInstance, options: GatewayOptions) {
  const { core } = options;

  app.get<{ Querystring: { lastEventId?: string; path?: string } }>(
    `${BASE_PATH}/events`,
    async (request, reply) => {
      const caller = await authenticate(options, request.headers.authorization);
      const lastId = readLastEventId(request.headers["last-event-id"] ?? request.query.lastEventId);
      const filter = request.query.path;

      reply.hijack();
      const stream = reply.raw;
      stream.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
      });
      stream.write(": connected\n\n");

      const buffered: CanonicalEvent[] = [];
      let replaying = true;
      let sentId = Number.isFinite(lastId) ? lastId : Number.POSITIVE_INFINITY;

      const send = (event: CanonicalEvent) => {
        if (event.id <= sentId && Number.isFinite(sentId)) {
          return;
        }

        if (
          !(caller.isAdmin || event.accountUuid === caller.accountUuid) ||
          (filter && !event.path.startsWith(filter))
        ) {
          return;
        }

        sentId = event.id;
        stream.write(`id: ${event.id}\nevent: ${event.path}\ndata: ${JSON.stringify(event)}\n\n`);
      };

      const unsubscribe = core.relay.onEvent((event) =>
        replaying ? buffered.push(event) : send(event),
      );
      const heartbeat = setInterval(() => stream.write(": heartbeat\n\n"), HEARTBEAT_MS);
      request.raw.on("close", () => {
        unsubscribe();
        clearInterval(heartbeat);
      });

      if (Number.isFinite(lastId)) {
        await replay(core, lastId, send, () => stream.destroyed);
      } else {
        sentId = Number.NEGATIVE_INFINITY;
      }

      replaying = false;

      for (const event of buffered) {
        send(event);
      }
    },
  );
}

/**
 * Sends every stored event after `lastId`, a page at a time, until the table has no more or the
 * client has gone. Events the relay publishes meanwhile are buffered by the caller.
 */
async function replay(
  core: GatewayOptions["core"],
  lastId: number,
  send: (event: CanonicalEvent) => void,
  closed: () => boolean,
) {
  let after = lastId;

  while (!closed()) {
    const rows = await core.kysely
      .selectFrom("events")
      .selectAll()
      .where("id", ">", after)
      .orderBy("id")
      .limit(REPLAY_PAGE)
      .execute();

    for (const row of rows) {
      send({ ...row, id: Number(row.id), content: JSON.parse(row.content) });
    }

    if (rows.length < REPLAY_PAGE) {
      return;
    }

    after = Number(rows[rows.length - 1]!.id);
  }
}

/** Reads the id of the last event a client saw, or NaN when it sent none. */
function readLastEventId(value: unknown) {
  if (value === undefined) {
    return Number.NaN;
  }

  if (typeof value !== "string" || !/^[0-9]+$/.test(value)) {
    throw new ApiError(
      "invalidArgument",
      `invalid Last-Event-ID '${String(value)}': expected the id of an event this stream sent, or none to start with new events`,
    );
  }

  return Number(value);
}

async function authenticate(
  options: GatewayOptions,
  authorization: string | undefined,
): Promise<Caller> {
  const match = authorization ? /^OAuth ([0-9a-f]{32})$/.exec(authorization.trim()) : null;

  if (!match) {
    throw new ApiError(
      "invalidSession",
      "missing or invalid Authorization header; send 'OAuth <session uuid>'",
    );
  }

  return options.sessions.authenticate(match[1]!);
}
