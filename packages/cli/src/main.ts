#!/usr/bin/env node
import { reportError } from "./errors.js";
import { buildProgram } from "./program.js";

/** Runs one command line and returns its exit code: 0 success, 1 API error, 2 usage error. */
async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: "user" });
    return 0;
  } catch (error) {
    return reportError(error, (text) => process.stderr.write(text));
  }
}

process.exitCode = await main(process.argv.slice(2));
