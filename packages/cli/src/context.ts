import { type ApiRoute, apiRoutes } from "@tstack/api";
import { buildCatalog, type ResourceEntry, TstackClient } from "@tstack/sdk";
import { readConfig } from "./config.js";
import { CliError } from "./errors.js";
import { type OutputFormat, outputFormat } from "./output.js";

/** Shared state of the commands: the resource catalog, a logged-in client and the output stream. */
export class CliContext {
  readonly catalog: Map<string, ResourceEntry>;
  readonly resources: ResourceEntry[];

  constructor(
    readonly write: (text: string) => void = (text) => process.stdout.write(text),
    routes: ApiRoute[] = apiRoutes,
  ) {
    this.catalog = buildCatalog(routes);
    this.resources = [...this.catalog.values()];
  }

  /** Returns a client with the saved endpoint and session; throws when no session is saved. */
  client(endpointOverride?: string): TstackClient {
    const config = readConfig();
    const endpoint = endpointOverride ?? process.env.TSTACK_ENDPOINT ?? config.endpoint;

    if (!endpoint || !config.session) {
      throw new CliError("not logged in", "run 'tstack login --endpoint <url> --account <name>'");
    }

    return new TstackClient({ endpoint, session: config.session });
  }

  /** Returns the checked `--output` format of a command. */
  format(options: { output?: string }): OutputFormat {
    return outputFormat(options.output);
  }
}
