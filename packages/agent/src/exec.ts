import { execFile } from "node:child_process";

/** Options of one host tool run. */
export interface RunOptions {
  /** Milliseconds before the tool is killed with SIGKILL; 60 s when unset. */
  timeoutMs?: number;
  /** Cancels the run; the tool is killed. */
  signal?: AbortSignal;
  /** Text written to the tool's standard input. */
  input?: string;
  /** Extra environment variables; LC_ALL is always C so output parses the same everywhere. */
  env?: Record<string, string>;
  /** Exit codes other than 0 that count as success. */
  okExitCodes?: number[];
}

/** Output of a finished host tool run. */
export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** A host tool that failed to start, timed out or exited with an unexpected code. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    message: string,
  ) {
    super(message);
    this.name = "CommandError";
  }
}

const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/**
 * Runs a host tool with an argument array and no shell, so no user string is ever parsed by a
 * shell. Rejects with a CommandError that carries the exit code and the trimmed stderr.
 */
export function run(command: string, args: readonly string[], options: RunOptions = {}) {
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const env = { ...process.env, ...options.env, LC_ALL: "C" };

  return new Promise<RunResult>((resolve, reject) => {
    const child = execFile(
      command,
      args,
      { env, timeout, killSignal: "SIGKILL", maxBuffer: MAX_OUTPUT_BYTES, signal: options.signal },
      (error, stdout, stderr) => {
        const exitCode = typeof child.exitCode === "number" ? child.exitCode : null;
        const accepted = exitCode !== null && (options.okExitCodes ?? []).includes(exitCode);

        if (!error || accepted) {
          resolve({ stdout, stderr, exitCode: exitCode ?? 0 });
          return;
        }

        const reason = describeFailure(error, exitCode, timeout);
        const detail = stderr.trim().slice(-4000);
        const text = `${command} ${args.join(" ")} ${reason}${detail ? `: ${detail}` : ""}`;
        reject(new CommandError(command, args, exitCode, detail, text));
      },
    );

    if (options.input !== undefined) {
      child.stdin?.end(options.input);
    }
  });
}

function describeFailure(
  error: Error & { code?: unknown; killed?: boolean },
  exitCode: number | null,
  timeout: number,
) {
  if (error.code === "ENOENT") {
    return "failed to start: the program is not installed";
  }

  if (error.killed && exitCode === null) {
    return `timed out after ${timeout} ms`;
  }

  return `failed with exit code ${exitCode ?? "unknown"}`;
}
