import { execFile } from "node:child_process";

/** Runs a local tool with an argument array and no shell; rejects with its stderr. */
export function run(command: string, args: readonly string[], timeoutMs = 30_000) {
  return new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile(
      command,
      args,
      { timeout: timeoutMs, env: { ...process.env, LC_ALL: "C" } },
      (error, stdout, stderr) => {
        if (error) {
          reject(
            new Error(`${command} ${args.join(" ")} failed: ${stderr.trim() || error.message}`),
          );
          return;
        }

        resolve({ stdout, stderr });
      },
    );
  });
}
