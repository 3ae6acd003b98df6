import { Command, Option } from "commander";
import { addCompletionCommand } from "./completion.js";
import { addConsoleCommand } from "./console.js";
import { CliContext } from "./context.js";
import { addEventsCommand } from "./events.js";
import { OUTPUT_FORMATS } from "./output.js";
import { addResourceCommands } from "./resources.js";
import { addSessionCommands } from "./session.js";

export const VERSION = "0.1.0";

/** Builds the whole command tree; resource commands come from the declared API routes. */
export function buildProgram(context = new CliContext()): Command {
  const program = new Command("tstack")
    .description("Command-line client of a tstack management node")
    .version(VERSION)
    .addOption(
      new Option("-o, --output <format>", "output format")
        .choices(OUTPUT_FORMATS)
        .default("table")
        .env("TSTACK_OUTPUT"),
    )
    .showSuggestionAfterError()
    // Subcommands inherit this, so every parse error throws and main() picks the exit code.
    .exitOverride();

  addSessionCommands(program, context);
  addEventsCommand(program, context);
  addResourceCommands(program, context);
  addConsoleCommand(program, context);
  addCompletionCommand(program, context);
  return program;
}
