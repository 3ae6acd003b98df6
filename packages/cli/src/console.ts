import { findResource } from "@tstack/sdk";
import type { Command } from "commander";
import type { CliContext } from "./context.js";
import { CliError } from "./errors.js";

/**
 * Adds `tstack vm console <vm>` as a clear failure while the API declares no console route.
 * Once a VM resource declares one, its generated verb takes the name and this adds nothing.
 */
export function addConsoleCommand(program: Command, context: CliContext) {
  const vm = findResource(context.catalog, "vm");

  if (vm && [...vm.operations.keys()].some((verb) => verb.includes("console"))) {
    return;
  }

  const parent =
    program.commands.find((command) => command.name() === vm?.command) ??
    program.command("vm").description("VM instances (no VM API is declared yet)");

  parent
    .command("console")
    .description("Stream a VM's serial console (not available yet)")
    .argument("<vm>", "VM name or uuid")
    .action(() => {
      throw new CliError(
        "the VM console is not available yet: the management node declares no VM console API",
        "upgrade the management node once it serves VM consoles",
      );
    });
}
