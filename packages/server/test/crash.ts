import type { Server } from "../src/server.js";
import { startTestServer, type TestServer } from "./harness.js";

/** A promise that never settles: the agent command of a node that died while waiting. */
const never = () => new Promise<never>(() => undefined);

/**
 * Replaces the agent client's `method` so that a command to `path` never returns, after
 * sending it to the agent when `send` is true. Resolves once such a command was made.
 */
export function stallAgent(
  server: Server,
  method: "call" | "callAsync",
  path: string,
  send: boolean,
) {
  const agents = server.core.agents as unknown as Record<
    string,
    (...args: unknown[]) => Promise<unknown>
  >;
  const original = agents[method]!.bind(agents);
  let reached: () => void;
  const stalled = new Promise<void>((resolve) => {
    reached = resolve;
  });

  agents[method] = async (...args: unknown[]) => {
    if (args[1] !== path) {
      return original(...args);
    }

    if (send) {
      await original(...args);
    }

    reached();
    return never();
  };

  return stalled;
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
