import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { freePort } from "./harness.js";

const MAIN = resolve(import.meta.dirname, "../dist/main.js");

/** A tstack-server child process and its combined output. */
export interface ServerProcess {
  child: ChildProcess;
  output: () => string;
  url: string;
}

/**
 * Starts tstack-server as its own process, the way an operator runs it, and waits until ready.
 * A restart that passes the same `port` keeps the URL, so clients and agents reach it again.
 */
export async function launchServer(
  dataDir: string,
  database: string | undefined,
  env: Record<string, string | undefined> = process.env,
  port?: number,
): Promise<ServerProcess> {
  port ??= await freePort();
  const args = [
    MAIN,
    "--listen",
    `127.0.0.1:${port}`,
    "--data-dir",
    dataDir,
    ...(database ? ["--database", database] : []),
  ];
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr!.on("data", (chunk) => {
    output += chunk;
  });
  const url = `http://127.0.0.1:${port}`;

  for (let attempt = 0; attempt < 400; attempt++) {
    if (child.exitCode !== null) {
      throw new Error(`tstack-server exited with ${child.exitCode}: ${output}`);
    }

    const ready = await fetch(`${url}/zstack/v1/management-nodes/ready`).catch(() => undefined);

    if (ready?.status === 200) {
      return { child, output: () => output, url };
    }

    await new Promise((done) => setTimeout(done, 50));
  }

  child.kill("SIGKILL");
  throw new Error(`tstack-server did not become ready within 20 s: ${output}`);
}

/** Resolves with the exit code once the child has exited, at once if it already has. */
export function exited(child: ChildProcess) {
  return new Promise<number | null>((done) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      done(child.exitCode);
    } else {
      child.once("exit", (code) => done(code));
    }
  });
}
