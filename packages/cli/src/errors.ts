import { ApiRequestError, ConnectionError, ResolveError } from "@tstack/sdk";
import { CommanderError } from "commander";

/** Exit codes: 0 success, 1 the API or the server reported an error, 2 usage error. */
export const EXIT_OK = 0;
export const EXIT_API_ERROR = 1;
export const EXIT_USAGE = 2;

/** A command line that cannot be run as given; exits with 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A failure outside the API's error bodies, such as a missing login; exits with 1. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** Prints an error for a person, never a stack trace, and returns the exit code. */
export function reportError(error: unknown, write: (text: string) => void): number {
  if (error instanceof CommanderError) {
    // Commander has printed its message already; help and version are not failures.
    const shown = ["commander.helpDisplayed", "commander.version"].includes(error.code);
    return shown ? EXIT_OK : EXIT_USAGE;
  }

  if (error instanceof UsageError) {
    write(`error: ${error.message}\n`);
    return EXIT_USAGE;
  }

  if (error instanceof ApiRequestError) {
    write(formatApiError(error));
    return EXIT_API_ERROR;
  }

  if (error instanceof CliError) {
    write(`error: ${error.message}\n${error.hint ? `hint: ${error.hint}\n` : ""}`);
    return EXIT_API_ERROR;
  }

  if (error instanceof ResolveError || error instanceof ConnectionError) {
    write(`error: ${error.message}\n`);
    return EXIT_API_ERROR;
  }

  write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
  return EXIT_API_ERROR;
}

function formatApiError(error: ApiRequestError) {
  const lines = [`error: ${error.code} ${error.description}`, `details: ${error.details}`];

  if (error.elaboration) {
    lines.push(`elaboration: ${error.elaboration}`);
  }

  if (error.body.cause) {
    lines.push(`cause: ${error.body.cause.code} ${error.body.cause.details}`);
  }

  if (error.code === "ID.1001") {
    lines.push("hint: the session is missing or expired; run 'tstack login' again");
  }

  return `${lines.join("\n")}\n`;
}
