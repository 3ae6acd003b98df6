import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ApiRequestError, TstackClient } from "@tstack/sdk";
import { afterEach, describe, expect, it } from "vitest";
import { createPostgresDatabase, dialects } from "./harness.js";
import { exited, launchServer } from "./server-process.js";

const MAIN = resolve(import.meta.dirname, "../dist/main.js");

/** Starts tstack-server with the test's environment plus `env`. */
function launch(dataDir: string, database: string | undefined, env: Record<string, string> = {}) {
  return launchServer(dataDir, database, { ...process.env, ...env });
}

const started: ChildProcess[] = [];
const directories: string[] = [];

afterEach(() => {
  for (const child of started.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
    }
  }

  for (const directory of directories.splice(0)) {
    rmSync(directory, { recursive: true, force: true });
  }
});

function tempDir() {
  const directory = mkdtempSync(join(tmpdir(), "tstack-process-"));
  directories.push(directory);
  return directory;
}

describe("tstack-server process", () => {
  it("generates an admin password once, keeps it in a 0600 file and stops on SIGTERM with 0", async () => {
    const dataDir = tempDir();
    const { TSTACK_ADMIN_PASSWORD: _, ...env } = process.env;
    const running = await launch(dataDir, undefined, env as Record<string, string>);
    started.push(running.child);

    const file = join(dataDir, "admin-password");
    const password = readFileSync(file, "utf8").trim();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(running.output()).toContain(password);
    expect(running.output()).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+\/zstack\/v1/);

    const client = new TstackClient({ endpoint: running.url });
    await client.logInByAccount("admin", password);
    expect(running.output()).not.toContain(client.session!);

    running.child.kill("SIGTERM");
    expect(await exited(running.child)).toBe(0);
  });

  it("rejects a bad --listen value with a message", async () => {
    const child = spawn(process.execPath, [MAIN, "--listen", "nowhere", "--data-dir", tempDir()], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    started.push(child);
    let stderr = "";
    child.stderr!.on("data", (chunk) => {
      stderr += chunk;
    });
    expect(await exited(child)).not.toBe(0);
    expect(stderr).toMatch(/expected HOST:PORT/);
  });
});

describe.each(dialects)("crash recovery on %s", (dialect) => {
  it("finishes a workflow cut by SIGKILL after restart", async () => {
    const dataDir = tempDir();
    const database = dialect === "postgres" ? await createPostgresDatabase() : undefined;
    const env = {
      TSTACK_ADMIN_PASSWORD: "password",
      TSTACK_TEST_WORKFLOW_STEP_DELAY_MS: "1500",
      TSTACK_LOG_LEVEL: "warn",
    };
    const first = await launch(dataDir, database, env);
    started.push(first.child);

    const client = new TstackClient({ endpoint: first.url, pollIntervalMs: 50 });
    await client.logInByAccount("admin", "password");
    const zone = (
      await client.call<{ inventory: { uuid: string } }>("createZone", {
        params: { name: "crash" },
      })
    ).inventory;
    const clusters: string[] = [];

    for (const name of ["c1", "c2", "c3"]) {
      clusters.push(
        (
          await client.call<{ inventory: { uuid: string } }>("createCluster", {
            params: { zoneUuid: zone.uuid, name, hypervisorType: "KVM" },
          })
        ).inventory.uuid,
      );
    }

    const accepted = await client.call<{ location: string }>("deleteZone", {
      path: { uuid: zone.uuid },
      query: { deleteMode: "Enforcing" },
      noWait: true,
    });
    const jobUuid = accepted.location.split("/").pop()!;

    for (;;) {
      const job = (
        await client.query<{ progress: number | null }>("queryApiJob", [`uuid=${jobUuid}`])
      ).inventories[0];

      if ((job?.progress ?? 0) >= 50) {
        break;
      }

      await new Promise((done) => setTimeout(done, 50));
    }

    first.child.kill("SIGKILL");
    await exited(first.child);

    const second = await launch(dataDir, database, {
      TSTACK_ADMIN_PASSWORD: "password",
      TSTACK_LOG_LEVEL: "warn",
    });
    started.push(second.child);
    const after = new TstackClient({ endpoint: second.url, pollIntervalMs: 50 });
    await after.logInByAccount("admin", "password");

    expect(await after.waitForJob(accepted.location)).toEqual({});
    expect((await after.query("queryZone", [`uuid=${zone.uuid}`])).inventories).toEqual([]);
    expect(
      (await after.query("queryCluster", [`uuid?=${clusters.join(",")}`])).inventories,
    ).toEqual([]);
    expect((await after.query("queryApiJob", ["state=Running"])).inventories).toEqual([]);

    second.child.kill("SIGTERM");
    expect(await exited(second.child)).toBe(0);
  });

  it("fails a job past its X-API-Timeout and leaves the resource intact", async () => {
    const dataDir = tempDir();
    const database = dialect === "postgres" ? await createPostgresDatabase() : undefined;
    const running = await launch(dataDir, database, {
      TSTACK_ADMIN_PASSWORD: "password",
      TSTACK_TEST_WORKFLOW_STEP_DELAY_MS: "2000",
      TSTACK_LOG_LEVEL: "warn",
    });
    started.push(running.child);
    const client = new TstackClient({ endpoint: running.url, pollIntervalMs: 50 });
    await client.logInByAccount("admin", "password");
    const zone = (
      await client.call<{ inventory: { uuid: string } }>("createZone", { params: { name: "slow" } })
    ).inventory;
    await client.call("createCluster", {
      params: { zoneUuid: zone.uuid, name: "kept", hypervisorType: "KVM" },
    });

    const error = await client
      .call("deleteZone", {
        path: { uuid: zone.uuid },
        query: { deleteMode: "Enforcing" },
        headers: { "X-API-Timeout": "1" },
      })
      .catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ApiRequestError);
    expect((error as ApiRequestError).code).toBe("SYS.1001");

    await new Promise((done) => setTimeout(done, 2500));
    expect((await client.query("queryZone", [`uuid=${zone.uuid}`])).inventories).toHaveLength(1);
    expect(
      (await client.query("queryCluster", [`zoneUuid=${zone.uuid}`])).inventories,
    ).toHaveLength(1);
  });
});
