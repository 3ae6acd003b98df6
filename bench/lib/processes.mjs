// Starts tstack-simulator and tstack-server as child processes for the benchmarks that drive a
// simulator cloud, so each process's CPU and memory can be read from /proc on its own.
import { spawn } from "node:child_process";
import { root } from "./harness.mjs";

/** Spawns `node <args>` and waits up to 60 s until `ready()` resolves to true. */
export async function launch(args, env, ready) {
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });

  for (let attempt = 0; attempt < 1200; attempt++) {
    if (child.exitCode !== null) {
      break;
    }

    if (await ready().catch(() => false)) {
      return child;
    }

    await new Promise((done) => setTimeout(done, 50));
  }

  child.kill("SIGKILL");
  throw new Error(`${args[0]} did not start within 60 s`);
}

/** Sends SIGTERM and waits for the process to exit. */
export async function stop(child) {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGTERM");
    await exited;
  }
}

/** Starts tstack-simulator on `port` with the admin `token`. */
export function startSimulator(port, token) {
  const url = `http://127.0.0.1:${port}`;
  return launch(
    ["packages/simulator/dist/main.js", "--listen", `127.0.0.1:${port}`, "--log-level", "warn"],
    { TSTACK_SIMULATOR_TOKEN: token },
    // An unsigned admin request gets 401 once the simulator listens.
    async () => (await fetch(`${url}/simulator/faults/list`, { method: "POST" })).status === 401,
  );
}

/**
 * Starts tstack-server on SQLite in `dataDir`, pointed at the simulator, with admin password
 * `password`, and waits until the management node reports ready. `nodeArgs` go to Node.js
 * itself, for example `--cpu-prof`.
 */
export function startServer({ port, dataDir, simulatorUrl, token, nodeArgs = [], extraArgs = [] }) {
  return launch(
    [
      ...nodeArgs,
      "packages/server/dist/main.js",
      "--listen",
      `127.0.0.1:${port}`,
      "--data-dir",
      dataDir,
      "--log-level",
      "warn",
      "--simulator",
      simulatorUrl,
      ...extraArgs,
    ],
    { TSTACK_SIMULATOR_TOKEN: token, TSTACK_ADMIN_PASSWORD: "password" },
    async () =>
      (await fetch(`http://127.0.0.1:${port}/zstack/v1/management-nodes/ready`)).status === 200,
  );
}
