import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { networkInterfaces } from "node:os";
import { dirname, join } from "node:path";

/** Whether an address names this machine, so a host there is deployed without SSH. */
export function isLocalAddress(address: string) {
  if (address === "localhost" || address.startsWith("127.")) {
    return true;
  }

  return Object.values(networkInterfaces()).some((list) =>
    (list ?? []).some((entry) => entry.address === address),
  );
}

/** Path of the built agent entry point shipped in this repository. */
export function agentEntryPoint() {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("@tstack/agent/package.json")), "dist", "main.js");
}

function pidFile(dataDir: string) {
  return join(dataDir, "agent.pid");
}

/** Returns the pid of a running agent started from `dataDir`, if any. */
export function runningAgentPid(dataDir: string): number | undefined {
  const path = pidFile(dataDir);

  if (!existsSync(path)) {
    return undefined;
  }

  const pid = Number(readFileSync(path, "utf8").trim());

  if (!Number.isInteger(pid) || pid <= 0) {
    return undefined;
  }

  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return cmdline.includes(dataDir) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes the host secret and starts the agent as a background process of its own session, so
 * it outlives the management node. Its output goes to `agent.log` in its data directory.
 */
export function startLocalAgent(options: {
  dataDir: string;
  listen: string;
  secret: string;
  logLevel?: string;
}) {
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(options.dataDir, "host-secret"), `${options.secret}\n`, { mode: 0o600 });
  const log = openSync(join(options.dataDir, "agent.log"), "a");
  const args = [
    agentEntryPoint(),
    "--listen",
    options.listen,
    "--data-dir",
    options.dataDir,
    "--log-level",
    options.logLevel ?? "info",
  ];
  const child = spawn(process.execPath, args, { detached: true, stdio: ["ignore", log, log] });
  child.unref();
  writeFileSync(pidFile(options.dataDir), `${child.pid}\n`);
  return child.pid!;
}

/** Stops the agent started from `dataDir`; its VMs keep running. */
export function stopLocalAgent(dataDir: string) {
  const pid = runningAgentPid(dataDir);

  if (pid) {
    process.kill(pid, "SIGTERM");
  }
}
