import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server as HttpServer } from "node:http";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addLocalHost, startTestServer, type TestServer } from "./harness.js";

type Inventory = Record<string, unknown> & { uuid: string };

const MiB = 1024 * 1024;

/** Serves files of `dir` on 127.0.0.1; `/truncated/<name>` promises more bytes than it sends. */
async function startFileServer(dir: string) {
  const server = createServer(async (request, response) => {
    const truncated = request.url?.startsWith("/truncated/");
    const name = (request.url ?? "").replace(/^\/(truncated\/)?/, "");

    try {
      const data = await readFile(join(dir, name));

      if (truncated) {
        response.writeHead(200, { "content-length": data.length });
        response.end(data.subarray(0, Math.floor(data.length / 2)));
        response.socket?.destroy();
        return;
      }

      response.writeHead(200, { "content-length": data.length });
      response.end(data);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${port}` };
}

async function failure(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string; status?: number; details?: string };
  }

  throw new Error("expected the call to fail");
}

describe("storage on a local KVM host", () => {
  let t: TestServer;
  let admin: TstackClient;
  let host: Awaited<ReturnType<typeof addLocalHost>>;
  let work: string;
  let files: { server: HttpServer; url: string };
  let backupStorage: Inventory;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "tss-"));
    t = await startTestServer("sqlite");
    admin = t.admin;
    host = await addLocalHost(t);
    // The agent's own policy, which the management node cannot widen.
    writeFileSync(
      join(host.agentDir, "storage-policy.json"),
      JSON.stringify({ allowLoopback: true, allowedFilePrefixes: [join(work, "allowed")] }),
    );
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", join(work, "small.qcow2"), "64M"]);
    files = await startFileServer(work);
  }, 120_000);

  afterAll(async () => {
    files?.server.close();
    await host?.cleanup();
    await t?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("adds an image store with capacity", async () => {
    backupStorage = (
      await admin.call<{ inventory: Inventory }>("addImageStoreBackupStorage", {
        params: { name: "store", url: join(work, "store"), hostname: "127.0.0.1" },
      })
    ).inventory;
    expect(backupStorage.status).toBe("Connected");
    expect(backupStorage.state).toBe("Enabled");
    expect(backupStorage.totalCapacity).toBeGreaterThan(0);
    expect(backupStorage.availableCapacity).toBeGreaterThan(0);

    await admin.call("attachBackupStorageToZone", {
      path: { zoneUuid: host.zoneUuid, backupStorageUuid: backupStorage.uuid },
      params: {},
    });
    const [queried] = (
      await admin.call<{ inventories: Inventory[] }>("queryBackupStorage", {
        query: { q: [`uuid=${backupStorage.uuid}`] },
      })
    ).inventories;
    expect(queried?.attachedZoneUuids).toEqual([host.zoneUuid]);
  });

  it("rejects an image store on an unknown host", async () => {
    const error = await failure(
      admin.call("addImageStoreBackupStorage", {
        params: { name: "x", url: join(work, "x"), hostname: "10.255.255.1" },
      }),
    );
    expect(String(error.message)).toMatch(/params.hostname/);
  });

  it("disables, enables and reconnects the image store", async () => {
    const disabled = await admin.call<{ inventory: Inventory }>("changeBackupStorageState", {
      path: { uuid: backupStorage.uuid },
      params: { stateEvent: "disable" },
    });
    expect(disabled.inventory.state).toBe("Disabled");
    await admin.call("changeBackupStorageState", {
      path: { uuid: backupStorage.uuid },
      params: { stateEvent: "enable" },
    });
    const reconnected = await admin.call<{ inventory: Inventory }>("reconnectBackupStorage", {
      path: { uuid: backupStorage.uuid },
      params: {},
    });
    expect(reconnected.inventory.status).toBe("Connected");
  });
});
