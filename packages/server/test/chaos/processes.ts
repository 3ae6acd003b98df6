import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync } from "node:fs";

/** A child process with the last 20,000 characters of its combined output. */
export interface Child {
  process: ChildProcess;
  output: () => string;
}

/**
 * Spawns `node <args>` with `env` added to this process's environment. With `logFile`, all of
 * its output is also appended to that file.
 */
export function launch(args: string[], env: Record<string, string>, logFile?: string): Child {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);

    if (logFile) {
      appendFileSync(logFile, chunk);
    }
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  return { process: child, output: () => output };
}

/** Polls `check` every 50 ms for 20 s; fails early with the output when the child exits. */
export async function waitFor(check: () => Promise<boolean>, what: string, child: Child) {
  for (let attempt = 0; attempt < 400; attempt++) {
    if (child.process.exitCode !== null) {
      throw new Error(
        `${what}: the process exited with ${child.process.exitCode}: ${child.output()}`,
      );
    }

    if (await check().catch(() => false)) {
      return;
    }

    await new Promise((done) => setTimeout(done, 50));
  }

  throw new Error(`${what} did not happen: ${child.output()}`);
}

/** Sends SIGKILL and resolves once the child has exited, at once if it already has. */
export function killAndWait(child: Child | undefined) {
  if (!child || child.process.exitCode !== null || child.process.signalCode !== null) {
    return Promise.resolve();
  }

  return new Promise<void>((done) => {
    child.process.once("exit", () => done());
    child.process.kill("SIGKILL");
  });
}
