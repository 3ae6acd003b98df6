#!/usr/bin/env node
import { Command, InvalidArgumentError } from "commander";
import { startServer, VERSION } from "./server.js";

function parseListen(value: string) {
  const match = /^(.+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);

  if (!match || port > 65535) {
    throw new InvalidArgumentError(`expected HOST:PORT such as 0.0.0.0:8080, got '${value}'`);
  }

  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}

const program = new Command()
  .name("tstack-server")
  .description(
    "tstack management node: the ZStack v1 REST API, database, workflows and host control",
  )
  .version(VERSION)
  .option(
    "--listen <host:port>",
    "address and port of the REST API (env TSTACK_LISTEN)",
    process.env.TSTACK_LISTEN ?? "0.0.0.0:8080",
  )
  .option(
    "--data-dir <path>",
    "directory for the SQLite database and generated secrets (env TSTACK_DATA_DIR)",
    process.env.TSTACK_DATA_DIR ?? "/var/lib/tstack",
  )
  .option(
    "--database <location>",
    "SQLite file path or postgres:// URL (env TSTACK_DATABASE); default: tstack.db in the data dir",
    process.env.TSTACK_DATABASE,
  )
  .option(
    "--simulator <url>",
    "URL of an external tstack-simulator for simulator hosts, such as http://127.0.0.1:7070; its admin token goes in env TSTACK_SIMULATOR_TOKEN (env TSTACK_SIMULATOR_URL; default: a simulator inside this process)",
    process.env.TSTACK_SIMULATOR_URL,
  )
  .option(
    "--log-level <level>",
    "pino log level: fatal, error, warn, info, debug or trace (env TSTACK_LOG_LEVEL)",
    process.env.TSTACK_LOG_LEVEL ?? "info",
  )
  .parse();

const options = program.opts<{
  listen: string;
  dataDir: string;
  database?: string;
  logLevel: string;
  simulator?: string;
}>();
const listen = parseListen(options.listen);

if (options.simulator) {
  // The simulator link reads it from the environment, which also serves embedders of startServer.
  process.env.TSTACK_SIMULATOR_URL = options.simulator;
}

const server = await startServer({
  host: listen.host,
  port: listen.port,
  dataDir: options.dataDir,
  database: options.database,
  logLevel: options.logLevel,
  adminPassword: process.env.TSTACK_ADMIN_PASSWORD,
}).catch((error: unknown) => {
  process.stderr.write(
    `tstack-server: failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});

let stopping = false;

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) {
      return;
    }

    stopping = true;
    server
      .stop()
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        process.stderr.write(`tstack-server: failed to stop cleanly: ${String(error)}\n`);
        process.exit(1);
      });
  });
}
