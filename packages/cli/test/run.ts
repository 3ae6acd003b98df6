import { type ChildProcess, execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The built CLI; the tests run it as a child process, the way a shell would. */
export const MAIN = fileURLToPath(new URL("../dist/main.js", import.meta.url));

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Fails early with the fix when the CLI has not been built. */
export function requireBuild() {
  if (!existsSync(MAIN)) {
    throw new Error(`${MAIN} is missing: run 'npm run build' before these tests`);
  }
}

/**
 * Runs `tstack` with the given config file. Asynchronous on purpose, because the server runs in
 * this process and must keep serving requests while the child waits for it.
 */
export function tstack(
  config: string,
  args: string[],
  env: Record<string, string> = {},
  input?: string,
): Promise<Run> {
  return startTstack(config, args, env, input).done;
}

/** Starts `tstack` like `tstack()` and also returns the child, for tests that signal it. */
export function startTstack(
  config: string,
  args: string[],
  env: Record<string, string> = {},
  input?: string,
): { child: ChildProcess; done: Promise<Run> } {
  let child!: ChildProcess;
  const done = new Promise<Run>((resolve) => {
    child = execFile(
      process.execPath,
      [MAIN, ...args],
      { env: { ...cleanEnvironment(), TSTACK_CONFIG: config, ...env }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error ? Number((error as { code?: number }).code ?? 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );

    child.stdin?.end(input ?? "");
  });

  return { child, done };
}

/** This process's environment without the variables that change what tstack does. */
function cleanEnvironment() {
  const env = { ...process.env };

  for (const name of ["TSTACK_OUTPUT", "TSTACK_PASSWORD", "TSTACK_ENDPOINT", "XDG_CONFIG_HOME"]) {
    delete env[name];
  }

  return env;
}
