import { AgentError } from "../src/drivers/agent-client.js";
import type { Server } from "../src/server.js";
import { startTestServer, type TestServer } from "./harness.js";

/** A promise that never settles: the agent command of a node that died while waiting. */
const never = () => new Promise<never>(() => undefined);

type AgentMethod = "call" | "callAsync";

/**
 * Replaces the agent client's `method` for commands to `path`: the command is sent to the agent
 * when `send` is true, then `after` returns the result the management node gets.
 */
function interceptAgent(
  server: Server,
  method: AgentMethod,
  path: string,
  send: boolean,
  after: () => Promise<never>,
) {
  const agents = server.core.agents as unknown as Record<
    string,
    (...args: unknown[]) => Promise<unknown>
  >;
  const original = agents[method]!.bind(agents);

  agents[method] = async (...args: unknown[]) => {
    if (args[1] !== path) {
      return original(...args);
    }

    if (send) {
      await original(...args);
    }

    return after();
  };
}

/**
 * Makes commands to `path` never return, after sending them to the agent when `send` is true.
 * Resolves once such a command was made.
 */
export function stallAgent(server: Server, method: AgentMethod, path: string, send: boolean) {
  return new Promise<void>((resolve) => {
    interceptAgent(server, method, path, send, () => {
      resolve();
      return never();
    });
  });
}

/**
 * Makes commands to `path` fail as if the agent never replied, after sending them to the agent
 * when `send` is true.
 */
export function loseAgentReplies(server: Server, method: AgentMethod, path: string, send: boolean) {
  interceptAgent(server, method, path, send, async () => {
    throw new AgentError(`agent command ${path} timed out (injected)`, path, "", true);
  });
}

/**
 * Stops a management node the way a crash would leave its work, then starts it again on the same
 * port, data directory and database, so that clients and agents keep reaching it. `t` must have
 * been started with an explicit `dataDir`, which its `stop` leaves in place.
 */
export async function restartServer(t: TestServer) {
  const port = Number(new URL(t.server.url).port);
  await t.server.stop(500);
  return startTestServer("sqlite", { dataDir: t.dataDir, database: t.database, port });
}
