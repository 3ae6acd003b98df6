import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TstackClient } from "@tstack/sdk";
import pg from "pg";
import pino from "pino";
import { inject } from "vitest";
import { type Server, startServer } from "../src/server.js";

export type Dialect = "sqlite" | "postgres";

/** Silent, unless TSTACK_TEST_LOG names a file to write the server's debug log to. */
function testLogger() {
  const file = process.env.TSTACK_TEST_LOG;
  return file
    ? pino({ level: "debug" }, pino.destination({ dest: file, sync: true }))
    : pino({ level: "silent" });
}

/** Every core test runs once per database dialect. */
export const dialects: Dialect[] = ["sqlite", "postgres"];

export const ADMIN_PASSWORD = "password";

/** Creates an empty PostgreSQL database in the run's cluster and returns its URL. */
export async function createPostgresDatabase(): Promise<string> {
  const base = inject("postgresUrl");
  const name = `t_${Math.random().toString(36).slice(2, 12)}`;
  const client = new pg.Client({ connectionString: base });
  await client.connect();
  await client.query(`create database ${name}`);
  await client.end();
  return base.replace(/\/postgres$/, `/${name}`);
}

export interface TestServer {
  server: Server;
  admin: TstackClient;
  dataDir: string;
  database: string;
  client(): TstackClient;
  stop(): Promise<void>;
}

/**
 * Starts a management node in this process and logs in as admin. It listens on a loopback port
 * unless `host` names another local address, such as one that agents in a namespace reach.
 */
export async function startTestServer(
  dialect: Dialect,
  options: { dataDir?: string; database?: string; host?: string; port?: number } = {},
): Promise<TestServer> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "tstack-test-"));
  const database =
    options.database ??
    (dialect === "postgres" ? await createPostgresDatabase() : join(dataDir, "tstack.db"));
  const server = await startServer({
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 0,
    dataDir,
    database,
    logLevel: "silent",
    adminPassword: ADMIN_PASSWORD,
    logger: testLogger(),
  });
  const client = () => new TstackClient({ endpoint: server.url, pollIntervalMs: 20 });
  const admin = client();
  await admin.logInByAccount("admin", ADMIN_PASSWORD);

  return {
    server,
    admin,
    dataDir,
    database,
    client,
    async stop() {
      await server.stop(5000);

      if (!options.dataDir) {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** Sends a raw HTTP request to the server, for cases an SDK would never produce. */
export async function raw(
  server: Server,
  method: string,
  path: string,
  init: { body?: string; headers?: Record<string, string> } = {},
) {
  const response = await fetch(`${server.url}/zstack/v1${path}`, {
    method,
    body: init.body,
    headers: init.headers,
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};

  try {
    json = JSON.parse(text);
  } catch {
    // Plain-text answers, such as the 404 of an expired job, leave json empty.
  }

  return { status: response.status, text, json, headers: response.headers };
}

/** Frees a loopback port for a process the test starts. */
export async function freePort() {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

/**
 * Adds this machine as a host of a new KVM (or Container) cluster with its agent in a temporary
 * data directory, on a free port. Returns the zone, cluster and host uuids and a cleanup that
 * stops the agent.
 */
export async function addLocalHost(t: TestServer, hypervisorType: "KVM" | "Container" = "KVM") {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { runningAgentPid } = await import("../src/compute/hosts/local.js");
  const agentDir = mkdtempSync(join(tmpdir(), "tstack-agent-"));
  await t.admin.call("updateGlobalConfig", {
    path: { category: "host", name: "agent.dataDir" },
    params: { value: agentDir },
  });
  await t.admin.call("updateGlobalConfig", {
    path: { category: "host", name: "agent.port" },
    params: { value: String(await freePort()) },
  });
  const zone = (
    await t.admin.call<{ inventory: { uuid: string } }>("createZone", { params: { name: "zone" } })
  ).inventory;
  const cluster = (
    await t.admin.call<{ inventory: { uuid: string } }>("createCluster", {
      params: { zoneUuid: zone.uuid, name: hypervisorType.toLowerCase(), hypervisorType },
    })
  ).inventory;
  const host = (
    await t.admin.call<{ inventory: { uuid: string } }>("addKVMHost", {
      params: {
        name: "local",
        managementIp: "127.0.0.1",
        username: "root",
        clusterUuid: cluster.uuid,
      },
    })
  ).inventory;

  return {
    zoneUuid: zone.uuid,
    clusterUuid: cluster.uuid,
    hostUuid: host.uuid,
    agentDir,
    async cleanup() {
      const pid = runningAgentPid(agentDir);

      if (pid) {
        process.kill(pid, "SIGKILL");
      }

      rmSync(agentDir, { recursive: true, force: true });
    },
  };
}

/**
 * Polls `read` every 100 ms until `accept` takes its value, and returns that value. Throws with
 * `what` and the last value when `timeoutMs` passes first.
 */
export async function until<T>(
  read: () => Promise<T>,
  accept: (value: T) => boolean,
  what: string,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  let value = await read();

  while (!accept(value)) {
    if (Date.now() > deadline) {
      throw new Error(`${what} did not happen; last value: ${JSON.stringify(value)}`);
    }

    await new Promise((resolve) => setTimeout(resolve, 100));
    value = await read();
  }

  return value;
}
