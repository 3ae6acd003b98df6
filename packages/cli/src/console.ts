import { findResource, resolveUuid } from "@tstack/sdk";
import type { Command } from "commander";
import type { CliContext } from "./context.js";
import { CliError } from "./errors.js";

const TAIL_BYTES = 65_536;
const POLL_MS = 1000;

/**
 * Adds `tstack vm console <vm>`: prints the tail of the VM's serial console log and, with
 * `--follow`, keeps printing what the guest writes. Where the API declares no console route it
 * fails with a clear message instead.
 */
export function addConsoleCommand(program: Command, context: CliContext) {
  const vm = findResource(context.catalog, "vm");
  const available = [...(vm?.operations.values() ?? [])].some(
    (route) => route.name === "getVmConsoleLog",
  );
  const parent =
    program.commands.find((command) => command.name() === vm?.command) ??
    program.command("vm").description("VM instances (no VM API is declared yet)");

  parent
    .command("console")
    .description("Print a VM's serial console log; --follow keeps streaming it")
    .argument("<vm>", "VM name or uuid")
    .option("-f, --follow", "keep printing new console output until interrupted")
    .action(async (value: string, options: { follow?: boolean }) => {
      if (!vm || !available) {
        throw new CliError(
          "the VM console is not available yet: the management node declares no VM console API",
          "upgrade the management node once it serves VM consoles",
        );
      }

      const client = context.client();
      const uuid = await resolveUuid(client, vm, value);
      let previous = "";

      for (;;) {
        const reply = await client.call<{ console: string }>("getVmConsoleLog", {
          path: { uuid },
          query: { bytes: TAIL_BYTES },
        });
        process.stdout.write(newOutput(previous, reply.console));
        previous = reply.console;

        if (!options.follow) {
          return;
        }

        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    });
}

/** Returns the part of `current` that follows what `previous` already showed. */
export function newOutput(previous: string, current: string) {
  if (!previous) {
    return current;
  }

  // The tail window slides, so find the longest end of `previous` that starts `current`.
  for (let overlap = Math.min(previous.length, current.length); overlap > 0; overlap--) {
    if (current.startsWith(previous.slice(previous.length - overlap))) {
      return current.slice(overlap);
    }
  }

  return current;
}
