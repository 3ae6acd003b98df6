import { type ChildProcess, execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

/** The built CLI; the tests run it as a child process, the way a shell would. */
export const MAIN = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const PTY_RUN = fileURLToPath(new URL("./pty-run.zsh", import.meta.url));

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

/**
 * Runs `tstack` on a pseudo-terminal through zsh's zpty module and returns everything it wrote
 * to the terminal, stdout and stderr mixed, with carriage returns and escape sequences kept.
 */
export async function tstackOnTerminal(config: string, args: string[]) {
  const { stdout } = await promisify(execFile)(
    "zsh",
    ["-f", PTY_RUN, process.execPath, MAIN, ...args],
    { env: { ...cleanEnvironment(), TSTACK_CONFIG: config }, timeout: 30_000 },
  );
  const exit = /<exit:(\d+)>/.exec(stdout);
  return { code: exit ? Number(exit[1]) : undefined, output: stdout.slice(0, exit?.index) };
}

/** This process's environment without the variables that change what tstack does. */
function cleanEnvironment() {
  const env = { ...process.env };

  for (const name of ["TSTACK_OUTPUT", "TSTACK_PASSWORD", "TSTACK_ENDPOINT", "XDG_CONFIG_HOME"]) {
    delete env[name];
  }

  return env;
}
