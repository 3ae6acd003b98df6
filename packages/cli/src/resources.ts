import type { ApiRoute } from "@tstack/api";
import { isJobRoute, type ResourceEntry, resolveUuid, type TstackClient } from "@tstack/sdk";
import { type Command, Option } from "commander";
import { LIST_COLUMNS } from "./columns.js";
import type { CliContext } from "./context.js";
import { CliError } from "./errors.js";
import { formatResult } from "./output.js";
import {
  nonNegativeInteger,
  type ParamFlag,
  paramFlags,
  referencedResource,
  referenceName,
  toOption,
} from "./params.js";
import { ProgressBar } from "./progress.js";

type Options = Record<string, unknown>;

/** A path variable as a positional argument; `{uuid}` names the resource itself. */
interface PathArgument {
  variable: string;
  label: string;
  reference?: ResourceEntry;
}

/** Adds one command per resource with `list`, `get` and a verb per API, all from the catalog. */
export function addResourceCommands(program: Command, context: CliContext) {
  for (const entry of context.resources) {
    const command = program
      .command(entry.command)
      .description(`${entry.name} resources`)
      .aliases(entry.aliases);

    if (entry.query) {
      addList(command, context, entry);
      addGet(command, context, entry);
    }

    for (const [verb, route] of entry.operations) {
      addOperation(command, context, entry, verb, route);
    }
  }
}

function addList(parent: Command, context: CliContext, entry: ResourceEntry) {
  parent
    .command("list")
    .description(entry.query!.summary)
    .option("--query <condition>", "a q= condition such as 'state=Enabled' (repeatable)", collect)
    .option("--limit <count>", "return at most this many", nonNegativeInteger)
    .option("--start <offset>", "skip this many first", nonNegativeInteger)
    .option("--sort <field>", "sort by a field: +field ascending, -field descending")
    .action(async (_options: Options, command: Command) => {
      const options = command.optsWithGlobals();
      const client = context.client();
      const result = await client.query(entry.query!.name, (options.query as string[]) ?? [], {
        limit: options.limit as number | undefined,
        start: options.start as number | undefined,
        sort: options.sort as string | undefined,
      });
      context.write(formatResult(result, context.format(options), LIST_COLUMNS[entry.name]));
    });
}

function addGet(parent: Command, context: CliContext, entry: ResourceEntry) {
  parent
    .command("get")
    .description(`Show one ${entry.name} by name or uuid`)
    .argument(`<${entry.command}>`, "name or uuid")
    .action(async (value: string, _options: Options, command: Command) => {
      const client = context.client();
      const uuid = await resolveUuid(client, entry, value);
      const result = await client.query(entry.query!.name, [`uuid=${uuid}`]);
      const inventory = result.inventories[0];

      if (!inventory) {
        throw new CliError(`${entry.command} '${value}' not found`);
      }

      context.write(formatResult({ inventory }, context.format(command.optsWithGlobals())));
    });
}

function addOperation(
  parent: Command,
  context: CliContext,
  entry: ResourceEntry,
  verb: string,
  route: ApiRoute,
) {
  const command = parent.command(verb).description(route.summary);
  const pathArguments = pathArgumentsOf(route, entry, context.resources);
  const params = paramFlags(route.params, context.resources);

  for (const argument of pathArguments) {
    const what = argument.reference ? `${argument.reference.name} name or uuid` : argument.variable;
    command.argument(`<${argument.label}>`, what);
  }

  for (const param of params) {
    for (const option of toOption(param)) {
      command.addOption(option);
    }
  }

  addWriteOptions(command, route);
  command.action(async (...args: unknown[]) => {
    const values = args.slice(0, pathArguments.length) as string[];
    const options = command.optsWithGlobals();
    await runOperation(context, route, { pathArguments, values, params, options });
  });
}

function addWriteOptions(command: Command, route: ApiRoute) {
  if (route.kind === "create" || route.kind === "action") {
    command.option("--system-tag <tag>", "a system tag (repeatable)", collect);
    command.option("--user-tag <tag>", "a user tag (repeatable)", collect);
  }

  if (route.kind === "delete") {
    command.addOption(
      new Option("--delete-mode <mode>", "Permissive refuses when others depend on it").choices([
        "Permissive",
        "Enforcing",
      ]),
    );
  }

  if (isJobRoute(route)) {
    // Waiting is the default. `--wait` is accepted so scripts can state it, and the last flag wins.
    command.option("--wait", "wait for the job to end, with a progress bar on a terminal");
    command.option("--no-wait", "print the job location instead of waiting for the job");
    command.option(
      "--timeout <seconds>",
      "fail the job after this many seconds",
      nonNegativeInteger,
    );
  }
}

async function runOperation(
  context: CliContext,
  route: ApiRoute,
  input: { pathArguments: PathArgument[]; values: string[]; params: ParamFlag[]; options: Options },
) {
  const client = context.client();
  const { options } = input;
  const path = await resolvePath(client, input.pathArguments, input.values);
  const params = await collectParams(client, input.params, options);
  const bodyless = route.method === "GET" || route.method === "DELETE";
  const headers: Record<string, string> = {};

  if (options.timeout !== undefined) {
    headers["x-api-timeout"] = String(options.timeout);
  }

  const format = context.format(options);
  const progress = new ProgressBar();
  const controller = new AbortController();
  const interrupt = () => controller.abort(new CliError("interrupted; cancelled the job"));
  process.once("SIGINT", interrupt);

  try {
    const result = await client.invoke(route, {
      path,
      params: bodyless ? undefined : params,
      query: bodyless ? { ...params, deleteMode: options.deleteMode as string | undefined } : {},
      systemTags: options.systemTag as string[] | undefined,
      userTags: options.userTag as string[] | undefined,
      headers,
      noWait: options.wait === false,
      onProgress: progress.enabled ? (job) => progress.update(job) : undefined,
      signal: controller.signal,
    });
    progress.end();
    context.write(formatWriteResult(result, format, options.wait === false));
  } finally {
    progress.end();
    process.removeListener("SIGINT", interrupt);
  }
}

function formatWriteResult(
  result: unknown,
  format: ReturnType<CliContext["format"]>,
  noWait: boolean,
) {
  if (noWait && format === "table") {
    return `${(result as { location: string }).location}\n`;
  }

  return formatResult(result, format);
}

async function resolvePath(client: TstackClient, argumentsOf: PathArgument[], values: string[]) {
  const path: Record<string, string> = {};

  for (const [index, argument] of argumentsOf.entries()) {
    const value = values[index]!;
    path[argument.variable] = argument.reference
      ? await resolveUuid(client, argument.reference, value)
      : value;
  }

  return path;
}

async function collectParams(client: TstackClient, flags: ParamFlag[], options: Options) {
  const params: Record<string, unknown> = {};

  for (const flag of flags) {
    const value = options[attributeOf(flag)];

    if (value === undefined) {
      continue;
    }

    params[flag.property] = flag.reference
      ? await resolveReference(client, flag.reference, value)
      : value;
  }

  return params;
}

function resolveReference(client: TstackClient, entry: ResourceEntry, value: unknown) {
  if (Array.isArray(value)) {
    return Promise.all(value.map((item) => resolveUuid(client, entry, String(item))));
  }

  return resolveUuid(client, entry, String(value));
}

function pathArgumentsOf(route: ApiRoute, entry: ResourceEntry, resources: ResourceEntry[]) {
  const variables = [...route.path.matchAll(/\{([^}]+)\}/g)].map((match) => match[1]!);

  return variables.map((variable): PathArgument => {
    if (variable === "uuid") {
      return { variable, label: entry.command, reference: entry.query ? entry : undefined };
    }

    const reference = referencedResource(variable, resources);
    const label = reference ? referenceName(variable, reference) : variable;
    return { variable, label, reference };
  });
}

function attributeOf(flag: ParamFlag) {
  return toOption(flag)[0]!.attributeName();
}

function collect(value: string, previous: string[] | undefined) {
  return [...(previous ?? []), value];
}
