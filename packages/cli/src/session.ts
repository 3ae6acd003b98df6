import { TstackClient } from "@tstack/sdk";
import type { Command } from "commander";
import { readConfig, writeConfig } from "./config.js";
import type { CliContext } from "./context.js";
import { CliError, UsageError } from "./errors.js";
import { readPassword } from "./prompt.js";

const DEFAULT_ENDPOINT = "http://127.0.0.1:8080";

/** Adds `tstack login` and `tstack logout`. */
export function addSessionCommands(program: Command, context: CliContext) {
  program
    .command("login")
    .description("Log in and keep the session in the config file (mode 0600)")
    .option("--endpoint <url>", `management node URL; the saved one, else ${DEFAULT_ENDPOINT}`)
    .requiredOption("--account <name>", "account name")
    .option("--user <name>", "log in as this user of the account instead of the account")
    .action(async (options: { endpoint?: string; account: string; user?: string }) => {
      const endpoint = options.endpoint ?? readConfig().endpoint ?? DEFAULT_ENDPOINT;
      checkEndpoint(endpoint);
      const password = await readPassword(`password for ${options.user ?? options.account}: `);
      const client = new TstackClient({ endpoint });
      const session = options.user
        ? await client.logInByUser(options.account, options.user, password)
        : await client.logInByAccount(options.account, password);
      writeConfig({
        endpoint: client.endpoint,
        session: session.uuid,
        accountName: options.account,
        userName: options.user,
        expiredDate: session.expiredDate,
      });
      context.write(`logged in to ${client.endpoint} as ${options.user ?? options.account}\n`);
    });

  program
    .command("logout")
    .description("End the session on the server and forget it")
    .action(async () => {
      const config = readConfig();

      if (!config.session || !config.endpoint) {
        throw new CliError("not logged in");
      }

      const client = new TstackClient({ endpoint: config.endpoint, session: config.session });
      await client.logOut();
      writeConfig({ endpoint: config.endpoint });
      context.write("logged out\n");
    });
}

function checkEndpoint(endpoint: string) {
  let url: URL;

  try {
    url = new URL(endpoint);
  } catch {
    throw new UsageError(
      `invalid endpoint '${endpoint}': expected a URL such as ${DEFAULT_ENDPOINT}`,
    );
  }

  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`invalid endpoint '${endpoint}': expected an http or https URL`);
  }
}
