#!/usr/bin/env node
import { Command, Option } from "commander";
import { pino } from "pino";
import { startAgent } from "./agent.js";
import { AGENT_VERSION } from "./version.js";

const program = new Command("tstack-agent")
  .description("tstack host agent: runs VMs on this host for the management node")
  .version(AGENT_VERSION)
  .addOption(
    new Option("--listen <host:port>", "address and TCP port of the command server")
      .env("TSTACK_AGENT_LISTEN")
      .default("0.0.0.0:7070"),
  )
  .addOption(
    new Option("--data-dir <path>", "directory with host-secret, VM run directories and state")
      .env("TSTACK_AGENT_DATA_DIR")
      .default("/var/lib/tstack-agent"),
  )
  .addOption(
    new Option("--log-level <level>", "pino log level")
      .env("TSTACK_AGENT_LOG_LEVEL")
      .choices(["trace", "debug", "info", "warn", "error", "fatal"])
      .default("info"),
  )
  .addOption(
    new Option("--accel <accel>", "QEMU accelerator; auto uses KVM only if a probe guest runs")
      .env("TSTACK_AGENT_ACCEL")
      .choices(["auto", "kvm", "tcg"])
      .default("auto"),
  );

program.parse();
const options = program.opts<{
  listen: string;
  dataDir: string;
  logLevel: string;
  accel: string;
}>();
const logger = pino({ level: options.logLevel });

try {
  const agent = await startAgent({
    listen: options.listen,
    dataDir: options.dataDir,
    accel: options.accel as "auto" | "kvm" | "tcg",
    logger,
  });

  const shutdown = (signal: string) => {
    logger.info({ signal }, "agent stopping; VMs keep running");
    void agent.close().then(() => process.exit(0));
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
} catch (error) {
  logger.fatal({ err: error }, "agent failed to start");
  process.exit(1);
}
