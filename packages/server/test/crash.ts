import { AgentError } from "../src/drivers/agent-client.js";
import type { Server } from "../src/server.js";
import { startTestServer, type TestServer } from "./harness.js";

/** A promise that never settles: the agent command of a node that died while waiting. */
const never = () => new Promise<never>(() => undefined);

type AgentMethod = "call" | "callAsync";

/**
 * Replaces the agent client's `method` for the next command to `path`: the command is sent to
 * the agent when `send` is true, then `after` returns the result the management node gets.
 * Later commands go through unchanged.
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

    delete agents[method];

    if (send) {
      await original(...args);
    }

    return after();
  };
}

/**
 * Makes the next command to `path` never return, after sending it to the agent when `send` is
 * true. Resolves once that command was made.
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
 * Makes the next command to `path` fail, after sending it to the agent when `send` is true. The
 * failure is a timeout when `unreachable` is true, else an error the agent reported.
 */
export function failAgentReply(
  server: Server,
  method: AgentMethod,
  path: string,
  options: { send: boolean; unreachable: boolean },
) {
  interceptAgent(server, method, path, options.send, async () => {
    const reason = options.unreachable ? "timed out" : "failed";
    throw new AgentError(
      `agent command ${path} ${reason} (injected)`,
      path,
      "",
      options.unreachable,
    );
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
