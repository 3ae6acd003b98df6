import type { FastifyInstance } from "fastify";
import { type HostFacts, readBootId, readCapacity } from "../host/facts.js";
import type { ConnectCmd, ConnectRsp, PingRsp } from "../protocol.js";
import { assertUuid, ValidationError } from "../validate.js";
import { AGENT_VERSION } from "../version.js";
import type { ServerContext } from "./app.js";
import { readConnection, saveConnection } from "./connection.js";

/** Registers `/host/echo`, `/host/connect`, `/host/ping`, `/host/facts` and `/host/capacity`. */
export function registerHostRoutes(app: FastifyInstance, context: ServerContext) {
  let facts: Promise<HostFacts> | undefined;

  app.post("/host/echo", async () => ({}));

  app.post("/host/connect", async (request): Promise<ConnectRsp> => {
    const body = request.body as Partial<ConnectCmd>;
    assertUuid(body.hostUuid, "hostUuid");

    if (
      typeof body.sendCommandUrl !== "string" ||
      !/^https?:\/\/[^\s]+$/.test(body.sendCommandUrl)
    ) {
      throw new ValidationError(
        `invalid sendCommandUrl ${JSON.stringify(body.sendCommandUrl)}: expected an http URL`,
      );
    }

    await saveConnection(context.dataDir, {
      hostUuid: body.hostUuid,
      sendCommandUrl: body.sendCommandUrl,
    });
    context.reporter.setUrl(body.sendCommandUrl);
    request.log.info({ hostUuid: body.hostUuid }, "connected to management node");
    return { success: true, hostUuid: body.hostUuid };
  });

  app.post("/host/ping", async (): Promise<PingRsp> => {
    const connection = await readConnection(context.dataDir);

    return {
      success: true,
      hostUuid: connection?.hostUuid ?? null,
      sendCommandUrl: connection?.sendCommandUrl ?? null,
      version: AGENT_VERSION,
      bootId: await readBootId(),
    };
  });

  app.post("/host/facts", async () => {
    facts ??= context.collectFacts().catch((error) => {
      facts = undefined;
      throw error;
    });

    return { success: true, ...(await facts) };
  });

  app.post("/host/capacity", async () => ({ success: true, ...(await readCapacity()) }));
}
