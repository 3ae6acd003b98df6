import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sha512Hex } from "@tstack/api";
import type { FastifyInstance } from "fastify";
import pino, { type Logger } from "pino";
import { InProcessBus } from "./core/bus.js";
import { type Core, transactor } from "./core/core.js";
import { Relay } from "./core/events.js";
import { GlobalConfig } from "./core/global-config.js";
import { newUuid, now } from "./core/ids.js";
import { failure, JobService } from "./core/jobs.js";
import { KeyedQueue } from "./core/queues.js";
import { SecretBox } from "./core/secrets.js";
import { WorkflowEngine } from "./core/workflow.js";
import { type Db, openDatabase } from "./db/connect.js";
import { AgentClient } from "./drivers/agent-client.js";
import { hashPassword } from "./identity/passwords.js";
import { insertDefaultQuotas } from "./identity/quotas.js";
import { SessionService } from "./identity/sessions.js";
import { modules } from "./modules.js";
import { defineCoreConfig, registerConfigResources } from "./platform/config-api.js";
import { joinManagementNodes } from "./platform/nodes.js";
import { buildGateway } from "./rest/gateway.js";
import { createMetrics } from "./rest/metrics.js";

export const VERSION = "0.1.0";

/** Settings of one management node process. */
export interface ServerOptions {
  host: string;
  port: number;
  dataDir: string;
  /** SQLite file path or `postgres://` URL; an SQLite file in the data dir when unset. */
  database?: string;
  logLevel: string;
  /** First admin password in clear text; a random one is generated when unset. */
  adminPassword?: string;
  logger?: Logger;
}

/** A running management node. */
export interface Server {
  url: string;
  core: Core;
  app: FastifyInstance;
  /** Stops accepting requests, lets running jobs finish for up to `graceMs`, then closes. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts a management node: database, recovery of unfinished work, then the REST gateway. */
export async function startServer(options: ServerOptions): Promise<Server> {
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const log =
    options.logger ??
    pino({
      level: options.logLevel,
      base: { service: "tstack-server" },
      redact: ["password", "*.password", "secret", "*.secret"],
    });
  const db = await openDatabase(options.database ?? join(options.dataDir, "tstack.db"));
  const core = buildCore(db, options.dataDir, log);
  defineCoreConfig(core);
  registerConfigResources(core);

  const sessions = new SessionService(core);
  const loaded = modules(sessions, VERSION);

  for (const module of loaded) {
    await module.register?.(core);
  }

  // After the modules, so the configurations they declare are stored too.
  await core.config.load();

  await bootstrapAdmin(core, options);

  let ready = false;
  const metrics = createMetrics({
    runningJobs: () => countRunningJobs(core),
    queueDepth: () => core.queues.depth,
  });
  core.workflows.onFinish = (name, outcome, seconds) =>
    metrics.workflowDuration.observe({ workflow: name, outcome }, seconds);
  const handlers = Object.assign({}, ...loaded.map((module) => module.handlers));
  const app = buildGateway({
    core,
    sessions,
    handlers,
    metrics,
    version: VERSION,
    isReady: () => ready,
    extraRoutes: loaded.flatMap((module) => (module.routes ? [module.routes.bind(module)] : [])),
  });
  // Listen before recovery, because rolling back a VM start talks to agents that call back to
  // this port. Until recovery ends, the gateway responds to API requests with SYS.1010 (not ready).
  const address = await app.listen({ host: options.host, port: options.port });
  const port = Number(new URL(address).port);
  core.port = port;
  await recover(core);

  for (const module of loaded) {
    await module.recover?.();
  }

  await core.relay.start();
  const sweepers = startSweepers(core, sessions);
  const leave = await joinManagementNodes(core, port, VERSION);
  const url = `http://${options.host === "0.0.0.0" ? "127.0.0.1" : options.host}:${port}`;

  for (const module of loaded) {
    module.start?.();
  }

  ready = true;
  log.info(
    { url: `${url}/zstack/v1`, database: db.dialect, nodeUuid: core.nodeUuid },
    `tstack-server listening on ${url}/zstack/v1`,
  );

  return {
    url,
    core,
    app,
    async stop(graceMs = 30_000) {
      ready = false;
      await app.close();
      await waitForIdle(core, graceMs);
      clearInterval(sweepers);

      for (const module of loaded) {
        await module.stop?.();
      }

      await core.jobs.flushProgress();
      core.relay.stop();
      await core.relay.settle();
      await leave();
      await core.bus.close();
      await db.close();
      log.info("tstack-server stopped");
    },
  };
}

function buildCore(db: Db, dataDir: string, log: Logger): Core {
  const nodeUuid = readNodeUuid(dataDir);
  const bus = new InProcessBus();
  const relay = new Relay(db.kysely, bus, log);
  const core: Core = {
    nodeUuid,
    dataDir,
    port: 0,
    secrets: SecretBox.open(dataDir),
    db,
    kysely: db.kysely,
    bus,
    queues: new KeyedQueue(),
    relay,
    jobs: new JobService(db.kysely, nodeUuid, log),
    workflows: new WorkflowEngine(db.kysely, nodeUuid, log, transactor(db.kysely, relay)),
    config: new GlobalConfig(db.kysely),
    log,
    transact: transactor(db.kysely, relay),
    agents: undefined as unknown as AgentClient,
    services: {},
  };
  core.agents = new AgentClient(core);
  return core;
}

/** Reads or creates the node uuid, kept across restarts so the node can recognise the jobs it owned before a crash. */
function readNodeUuid(dataDir: string) {
  const path = join(dataDir, "node-uuid");

  if (existsSync(path)) {
    return readFileSync(path, "utf8").trim();
  }

  const uuid = newUuid();
  writeFileSync(path, `${uuid}\n`, { mode: 0o600 });
  return uuid;
}

const ADMIN_UUID = "36c27e8ff05c4780bf6d2fa65700f22e";

/** Creates the admin account on first start; prints a generated password once and keeps it in a 0600 file. */
async function bootstrapAdmin(core: Core, options: ServerOptions) {
  const existing = await core.kysely
    .selectFrom("accounts")
    .select("uuid")
    .where("name", "=", "admin")
    .executeTakeFirst();

  if (existing) {
    return;
  }

  let password = options.adminPassword;

  if (!password) {
    password = randomBytes(12).toString("base64url");
    const file = join(options.dataDir, "admin-password");
    writeFileSync(file, `${password}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    process.stdout.write(`tstack: generated admin password: ${password} (also kept in ${file})\n`);
  }

  const passwordHash = await hashPassword(sha512Hex(password));
  const stamp = now();
  await core.transact(async (tx) => {
    await tx
      .insertInto("accounts")
      .values({
        uuid: ADMIN_UUID,
        name: "admin",
        description: "the first admin account",
        accountUuid: ADMIN_UUID,
        type: "SystemAdmin",
        state: "Enabled",
        passwordHash,
        createDate: stamp,
        lastOpDate: stamp,
        version: 0,
      })
      .execute();
    await tx
      .insertInto("resources")
      .values({
        uuid: ADMIN_UUID,
        resourceType: "Account",
        name: "admin",
        accountUuid: ADMIN_UUID,
        createDate: stamp,
      })
      .execute();
    await insertDefaultQuotas(tx, ADMIN_UUID);
  });
  core.log.info({ accountUuid: ADMIN_UUID }, "created the admin account");
}

/**
 * Ends what a crash left behind before new work is accepted. Unfinished workflows are resumed or
 * rolled back and their jobs ended. Jobs with no workflow behind them fail.
 */
async function recover(core: Core) {
  for (const outcome of await core.workflows.recover()) {
    if (!outcome.jobUuid) {
      continue;
    }

    const result = outcome.succeeded
      ? { status: 200 as const, body: outcome.result ?? {} }
      : failure({
          code: "SYS.1006",
          description: "An operation failed",
          details: outcome.error ?? "the workflow failed during recovery",
        });
    await core.transact((tx) => core.jobs.finish(tx, outcome.jobUuid!, result));
  }

  for (const job of await core.jobs.orphans()) {
    const details = `the management node restarted before job ${job.uuid} (${job.apiName}) finished; what it had started was undone at start-up, so retry the request`;
    await core.transact((tx) =>
      core.jobs.finish(
        tx,
        job.uuid,
        failure({ code: "SYS.1006", description: "An operation failed", details }),
      ),
    );
    core.log.warn(
      { jobUuid: job.uuid, api: job.apiName },
      "failed a job left running by a restart",
    );
  }
}

const SWEEP_INTERVAL_MS = 30_000;

function startSweepers(core: Core, sessions: SessionService) {
  const sweep = async () => {
    await core.jobs.expire(
      Math.max(core.config.number("rest", "completedApi.expiredPeriod"), 86_400) * 1000,
    );
    await sessions.purgeExpired();
    const cutoff = new Date(
      Date.now() - core.config.number("eventStream", "retention") * 1000,
    ).toISOString();
    await core.kysely.deleteFrom("events").where("createDate", "<", cutoff).execute();
    await core.kysely
      .deleteFrom("deliveries")
      .where("state", "!=", "Pending")
      .where("createDate", "<", cutoff)
      .execute();

    for (const job of await core.jobs.overdue()) {
      const details = `job ${job.uuid} (${job.apiName}) passed its deadline ${job.deadline}`;
      await core.transact((tx) =>
        core.jobs.finish(
          tx,
          job.uuid,
          failure({ code: "SYS.1001", description: "An operation timed out", details }),
        ),
      );
    }
  };

  const timer = setInterval(
    () => void sweep().catch((error) => core.log.error({ err: error }, "background sweep failed")),
    SWEEP_INTERVAL_MS,
  );
  timer.unref();
  return timer;
}

async function countRunningJobs(core: Core) {
  const row = await core.kysely
    .selectFrom("apiJobs")
    .select((eb) => eb.fn.countAll<number>().as("count"))
    .where("state", "=", "Running")
    .executeTakeFirst();
  return Number(row?.count ?? 0);
}

async function waitForIdle(core: Core, graceMs: number) {
  const deadline = Date.now() + graceMs;

  while (core.queues.depth > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  if (core.queues.depth > 0) {
    core.log.warn(
      { tasks: core.queues.depth },
      "stopping with tasks still running; they are recovered at the next start",
    );
  }
}
