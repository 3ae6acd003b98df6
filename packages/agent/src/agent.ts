import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { adoptContainers, ContainerDriver } from "./container/index.js";
import { collectFacts } from "./host/facts.js";
import { probeAccelerator } from "./host/kvm.js";
import { Monitor } from "./monitoring/monitor.js";
import { buildServer } from "./server/app.js";
import { readConnection } from "./server/connection.js";
import { Reporter } from "./server/reporter.js";
import { adoptVms, QemuDriver } from "./vm/index.js";
import type { Accelerator } from "./vm/types.js";

/** Settings of a running agent. */
export interface AgentOptions {
  /** `HOST:PORT` of the command server; port 0 picks a free port. */
  listen: string;
  dataDir: string;
  /** `auto` probes KVM with a tiny guest and falls back to TCG. */
  accel: Accelerator | "auto";
  logger: Logger;
}

/** A running agent. */
export interface Agent {
  /** The `http://host:port` the command server listens on. */
  url: string;
  driver: QemuDriver;
  containers: ContainerDriver;
  /** Stops the command server and detaches from QEMU; VMs keep running. */
  close(): Promise<void>;
}

/**
 * Starts the agent: reads the host secret, re-adopts the VMs of an earlier run and opens the
 * command server.
 */
export async function startAgent(options: AgentOptions): Promise<Agent> {
  const { dataDir, logger } = options;
  const { host, port } = parseListen(options.listen);

  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const secret = await readSecret(dataDir, logger);
  const accel = options.accel === "auto" ? await chooseAccelerator(logger) : options.accel;
  const reporter = new Reporter(() => secret, logger);
  const connection = await readConnection(dataDir);

  if (connection) {
    reporter.setUrl(connection.sendCommandUrl);
  }

  const onReport = reporter.send.bind(reporter);
  const driver = new QemuDriver({ dataDir, accel, logger, onReport });
  await adoptVms(driver, dataDir, logger, onReport);
  const containers = new ContainerDriver({
    dataDir,
    logger,
    onReport,
    namePrefix: process.env.TSTACK_AGENT_CONTAINER_PREFIX,
  });
  await adoptContainers(containers, dataDir, logger, onReport);
  const monitor = new Monitor({
    dataDir,
    secret: () => secret,
    logger,
    driver,
    containers,
  });

  const app = buildServer({
    dataDir,
    secret: () => secret,
    driver,
    containers,
    reporter,
    logger,
    collectFacts,
    monitor,
  });
  const url = await app.listen({ host, port });
  await monitor.start();
  logger.info({ url, accel, dataDir }, "agent started");

  return {
    url,
    driver,
    containers,
    async close() {
      // NOTE: tasks still running are not awaited; a start cut short here can leave a tap or
      // run directory behind until the VM is destroyed.
      monitor.stop();
      await app.close();
      driver.close();
      containers.close();
    },
  };
}

async function readSecret(dataDir: string, logger: Logger) {
  const path = join(dataDir, "host-secret");
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new Error(
      `failed to read the host secret ${path}: ${error.code ?? error.message}. Write the secret the management node uses for this host there, mode 0600`,
    );
  });
  const secret = text.trim();

  if (secret.length < 16) {
    throw new Error(`host secret in ${path} is shorter than 16 characters`);
  }

  if (((await stat(path)).mode & 0o077) !== 0) {
    logger.warn({ path }, "host secret is readable by group or others; chmod 600 it");
  }

  return secret;
}

async function chooseAccelerator(logger: Logger) {
  const probe = await probeAccelerator();
  logger.info({ accel: probe.accel, reason: probe.reason }, "accelerator chosen");
  return probe.accel;
}

function parseListen(listen: string) {
  const match = /^(.+):(\d{1,5})$/.exec(listen);
  const port = match ? Number(match[2]) : Number.NaN;

  if (!match || port > 65535) {
    throw new Error(
      `invalid --listen ${JSON.stringify(listen)}: expected HOST:PORT such as 0.0.0.0:7070`,
    );
  }

  return { host: match[1]!.replace(/^\[(.*)\]$/, "$1"), port };
}
