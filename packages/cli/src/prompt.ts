import { CliError } from "./errors.js";

/**
 * Reads a password: `TSTACK_PASSWORD` when set, else a prompt on the terminal with echo off, else
 * the first line of stdin, so `tstack login < file` works in scripts.
 */
export async function readPassword(prompt: string): Promise<string> {
  if (process.env.TSTACK_PASSWORD !== undefined) {
    return process.env.TSTACK_PASSWORD;
  }

  if (!process.stdin.isTTY) {
    return firstLineOfStdin();
  }

  process.stderr.write(prompt);
  return readWithoutEcho();
}

function readWithoutEcho(): Promise<string> {
  const stdin = process.stdin;
  let password = "";

  return new Promise((resolve, reject) => {
    const finish = (error?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.removeListener("data", onData);
      process.stderr.write("\n");
      error ? reject(error) : resolve(password);
    };

    const onData = (chunk: Buffer) => {
      for (const character of chunk.toString("utf8")) {
        if (character === "\r" || character === "\n") {
          return finish();
        }

        if (character === "\u0003") {
          return finish(new CliError("login interrupted"));
        }

        password = character === "\u007f" ? password.slice(0, -1) : password + character;
      }
    };

    stdin.setRawMode(true);
    stdin.resume();
    stdin.on("data", onData);
  });
}

async function firstLineOfStdin() {
  let text = "";

  for await (const chunk of process.stdin) {
    text += chunk.toString();

    if (text.includes("\n")) {
      break;
    }
  }

  return text.split(/\r?\n/)[0] ?? "";
}
