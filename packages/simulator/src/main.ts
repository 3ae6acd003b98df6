#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { pino } from "pino";
import { Simulator } from "./simulator.js";

function parseListen(value: string) {
  const match = /^(.+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);

  if (!match || port > 65535) {
    throw new InvalidArgumentError(`expected HOST:PORT such as 127.0.0.1:7070, got '${value}'`);
  }

  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}

const program = new Command()
  .name("tstack-simulator")
  .description(
    "Simulated tstack hosts and storage: answers the agent protocol for many hosts in memory, with fault injection",
  )
  .option(
    "--listen <host:port>",
    "address and port to listen on (env TSTACK_SIMULATOR_LISTEN)",
    process.env.TSTACK_SIMULATOR_LISTEN ?? "127.0.0.1:7070",
  )
  .option(
    "--admin-token-file <path>",
    "file whose first line is the token that signs admin requests (env TSTACK_SIMULATOR_TOKEN holds the token itself)",
  )
  .option(
    "--log-level <level>",
    "pino log level (env TSTACK_LOG_LEVEL)",
    process.env.TSTACK_LOG_LEVEL ?? "info",
  )
  .parse();

const options = program.opts<{ listen: string; adminTokenFile?: string; logLevel: string }>();
const listen = parseListen(options.listen);
const adminToken = options.adminTokenFile
  ? readFileSync(options.adminTokenFile, "utf8").split("\n")[0]!.trim()
  : process.env.TSTACK_SIMULATOR_TOKEN;

if (!adminToken || adminToken.length < 16) {
  process.stderr.write(
    "tstack-simulator: an admin token of at least 16 characters is required: give --admin-token-file or set TSTACK_SIMULATOR_TOKEN\n",
  );
  process.exit(2);
}

const simulator = new Simulator({
  host: listen.host,
  port: listen.port,
  adminToken,
  logger: pino({ level: options.logLevel }),
});

await simulator.start().catch((error: unknown) => {
  process.stderr.write(
    `tstack-simulator: failed to start: ${String((error as Error)?.message ?? error)}\n`,
  );
  process.exit(1);
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    void simulator.stop().then(() => process.exit(0));
  });
}
