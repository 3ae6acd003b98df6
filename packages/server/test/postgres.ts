import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";

/** Finds the newest PostgreSQL server binaries that Debian's postgresql package installs. */
function postgresBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];

  for (const version of versions) {
    const bin = join(root, version, "bin");

    if (existsSync(join(bin, "initdb"))) {
      return bin;
    }
  }

  throw new Error(
    "PostgreSQL server binaries not found under /usr/lib/postgresql; run scripts/install-host-packages.sh (npm test does)",
  );
}

function postgresUser() {
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  return { uid, gid };
}

/**
 * Vitest global setup: starts one throwaway PostgreSQL cluster on a loopback port for the test
 * project and hands its URL to the tests; the returned teardown stops it. PostgreSQL refuses to
 * run as root, so it runs as the `postgres` user that Debian's package creates.
 */
export async function setup(project: TestProject) {
  const bin = postgresBin();
  const user = postgresUser();
  const directory = mkdtempSync(join(tmpdir(), "tstack-pg-"));
  chmodSync(directory, 0o777);
  const data = join(directory, "data");
  const port = 20000 + Math.floor(Math.random() * 20000);

  execFileSync(
    join(bin, "initdb"),
    ["-D", data, "-U", "tstack", "--auth=trust", "-E", "UTF8", "--no-sync"],
    { uid: user.uid, gid: user.gid, stdio: "ignore" },
  );
  const server: ChildProcess = spawn(
    join(bin, "postgres"),
    [
      "-D",
      data,
      "-p",
      String(port),
      "-k",
      directory,
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "fsync=off",
      "-c",
      "max_connections=300",
    ],
    { uid: user.uid, gid: user.gid, stdio: "ignore" },
  );

  const url = `postgres://tstack@127.0.0.1:${port}/postgres`;
  await waitForPostgres(url);
  project.provide("postgresUrl", url);

  return async () => {
    if (server.exitCode === null && server.signalCode === null) {
      server.kill("SIGINT");
      await new Promise((resolve) => server.once("exit", resolve));
    }

    rmSync(directory, { recursive: true, force: true });
  };
}

async function waitForPostgres(url: string) {
  const pg = await import("pg");

  for (let attempt = 0; attempt < 100; attempt++) {
    const client = new pg.default.Client({ connectionString: url });

    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  throw new Error(`PostgreSQL did not accept connections at ${url} within 10 s`);
}

declare module "vitest" {
  export interface ProvidedContext {
    postgresUrl: string;
  }
}
