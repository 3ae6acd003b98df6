import type { CanonicalEvent } from "@tstack/sdk";
import type { Command } from "commander";
import type { CliContext } from "./context.js";
import { nonNegativeInteger } from "./params.js";
import { toYaml } from "./yaml.js";

/** Adds `tstack events`, which follows the server-sent event stream until Ctrl-C. */
export function addEventsCommand(program: Command, context: CliContext) {
  program
    .command("events")
    .description("Follow canonical events; reconnects and resumes with Last-Event-ID")
    .option("--path <prefix>", "only events whose path starts with this, such as /zone/")
    .option("--last-event-id <id>", "replay the events after this id first", nonNegativeInteger)
    .option("--count <number>", "stop after this many events", nonNegativeInteger)
    .action(async (_options, command: Command) => {
      const options = command.optsWithGlobals();
      const format = context.format(options);
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once("SIGINT", stop);
      let seen = 0;

      try {
        const stream = context.client().events({
          path: options.path,
          lastEventId: options.lastEventId,
          signal: controller.signal,
        });

        for await (const event of stream) {
          context.write(formatEvent(event, format));
          seen += 1;

          if (options.count !== undefined && seen >= options.count) {
            break;
          }
        }
      } finally {
        process.removeListener("SIGINT", stop);
      }
    });
}

function formatEvent(event: CanonicalEvent, format: string) {
  if (format === "json") {
    return `${JSON.stringify(event)}\n`;
  }

  if (format === "yaml") {
    return `---\n${toYaml(event)}`;
  }

  return `${event.id}  ${event.createDate}  ${event.path}  ${event.resourceUuid ?? "-"}\n`;
}
