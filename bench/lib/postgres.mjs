// A throwaway PostgreSQL cluster on a loopback port, started the way packages/server/test/postgres.ts
// starts the test cluster: initdb and postgres from Debian's postgresql package, run as the
// `postgres` user because PostgreSQL refuses to run as root.
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "./harness.mjs";

function postgresBin() {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  const found = versions.map((version) => join(root, version, "bin"));
  const bin = found.find((candidate) => existsSync(join(candidate, "initdb")));

  if (!bin) {
    throw new Error(
      "PostgreSQL server binaries not found under /usr/lib/postgresql; run scripts/install-host-packages.sh",
    );
  }

  return bin;
}

function postgresUser() {
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  return { uid, gid };
}

async function waitForPostgres(url) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const client = new pg.Client({ connectionString: url });

    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await new Promise((done) => setTimeout(done, 100));
    }
  }

  throw new Error(`PostgreSQL did not accept connections at ${url} within 10 s`);
}

/**
 * Starts a cluster with `fsync=off` and returns the URL of an empty database in it and a `stop`
 * that stops the server and deletes its directory.
 */
export async function startThrowawayPostgres() {
  const bin = postgresBin();
  const user = postgresUser();
  const directory = mkdtempSync(join(tmpdir(), "tstack-bench-pg-"));
  chmodSync(directory, 0o777);
  const data = join(directory, "data");
  const port = await freePort();

  execFileSync(
    join(bin, "initdb"),
    ["-D", data, "-U", "tstack", "--auth=trust", "-E", "UTF8", "--no-sync"],
    { uid: user.uid, gid: user.gid, stdio: "ignore" },
  );
  const server = spawn(
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
    ],
    { uid: user.uid, gid: user.gid, stdio: "ignore" },
  );

  const stop = async () => {
    if (server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((done) => server.once("exit", done));
      // Smart shutdown lets sessions that are closing finish: after the management node stops,
      // node-postgres may still be closing a connection, and a fast shutdown (SIGINT) makes that
      // connection emit an unhandled error. A session still open after 10 s gets the fast one.
      server.kill("SIGTERM");
      const fast = setTimeout(() => server.kill("SIGINT"), 10_000);
      await exited;
      clearTimeout(fast);
    }

    rmSync(directory, { recursive: true, force: true });
  };

  try {
    const base = `postgres://tstack@127.0.0.1:${port}/postgres`;
    await waitForPostgres(base);
    const client = new pg.Client({ connectionString: base });
    await client.connect();
    await client.query("create database bench");
    await client.end();
    return { url: base.replace(/\/postgres$/, "/bench"), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
