import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newUuid } from "../src/core/ids.js";
import { ADMIN_PASSWORD, addLocalHost, freePort, type TestServer, until } from "./harness.js";
import { exited, launchServer, type ServerProcess } from "./server-process.js";

type Inventory = { uuid: string } & Record<string, unknown>;

const MiB = 1024 * 1024;

/**
 * Serves a raw image over HTTP on 127.0.0.1. Every response sends its first MiB at once and the
 * rest only after `release()`, so the test can see a download in flight without timing it.
 */
async function serveHeldImage(size: number) {
  const image = Buffer.alloc(size, 0x5a);
  let release!: () => void;
  const released = new Promise<void>((done) => {
    release = done;
  });
  const responses: { closed: Promise<void> }[] = [];

  const server: Server = createServer((_request, response) => {
    const closed = new Promise<void>((done) => response.once("close", done));
    responses.push({ closed });
    response.writeHead(200, { "content-length": size });
    response.write(image.subarray(0, MiB));
    void released.then(() => response.end(image.subarray(MiB)));
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/held.raw`,
    responses,
    release,
    close: () => {
      server.closeAllConnections();
      return new Promise((done) => server.close(done));
    },
  };
}

/** Names in a directory, none when it does not exist. */
function filesIn(dir: string) {
  return existsSync(dir) ? readdirSync(dir) : [];
}

describe("image download and a management node crash", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "tstack-download-crash-"));
  const work = mkdtempSync(join(tmpdir(), "tstack-download-crash-store-"));
  const storeRoot = join(work, "store");
  const environment = {
    ...process.env,
    TSTACK_ADMIN_PASSWORD: ADMIN_PASSWORD,
    TSTACK_LOG_LEVEL: "warn",
  };
  let port: number;
  let server: ServerProcess;
  let admin: TstackClient;
  let host: Awaited<ReturnType<typeof addLocalHost>>;
  let backupStorageUuid: string;

  async function start() {
    server = await launchServer(dataDir, undefined, environment, port);
  }

  beforeAll(async () => {
    port = await freePort();
    await start();
    admin = new TstackClient({ endpoint: server.url, pollIntervalMs: 50 });
    await admin.logInByAccount("admin", ADMIN_PASSWORD);
    host = await addLocalHost({ admin } as unknown as TestServer);
    writeFileSync(
      join(host.agentDir, "storage-policy.json"),
      JSON.stringify({ allowLoopback: true }),
    );
    await admin.call("updateGlobalConfig", {
      path: { category: "image", name: "allowLoopbackUrls" },
      params: { value: "true" },
    });
    const store = (
      await admin.call<{ inventory: Inventory }>("addImageStoreBackupStorage", {
        params: { name: "store", url: storeRoot, hostname: "127.0.0.1" },
      })
    ).inventory;
    await admin.call("attachBackupStorageToZone", {
      path: { zoneUuid: host.zoneUuid, backupStorageUuid: store.uuid },
    });
    backupStorageUuid = store.uuid;
  }, 120_000);

  afterAll(async () => {
    if (server?.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill("SIGTERM");
      await exited(server.child);
    }

    await host?.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it("fails the image and removes its files", async () => {
    const source = await serveHeldImage(4 * MiB);
    const imageUuid = newUuid();
    const accepted = await admin.call<{ location: string }>("addImage", {
      params: {
        name: "held",
        resourceUuid: imageUuid,
        url: source.url,
        format: "raw",
        mediaType: "RootVolumeTemplate",
        backupStorageUuids: [backupStorageUuid],
      },
      noWait: true,
    });
    const imageDir = join(storeRoot, "images", imageUuid);
    await until(
      async () => filesIn(imageDir),
      (files) => files.some((file) => file.includes(".download-")),
      "the download's temporary file",
    );

    server.child.kill("SIGKILL");
    await exited(server.child);
    await start();

    const outcome = await admin.waitForJob(accepted.location).then(
      () => "succeeded",
      (error: Error) => error.message,
    );
    expect(outcome).toMatch(/restarted/);
    expect((await admin.query("queryApiJob", ["state=Running"])).inventories).toEqual([]);

    const image = (await admin.query<Inventory>("queryImage", [`uuid=${imageUuid}`]))
      .inventories[0]!;
    expect(image.status).toBe("Error");
    expect(String(image.lastError)).toMatch(/restarted before the image was stored/);
    const refs = image.backupStorageRefs as Inventory[];
    expect(refs.map((ref) => ref.status)).toEqual(["Error"]);

    // The source now sends the rest, so an agent that kept downloading would store the image.
    source.release();
    await source.responses[0]!.closed;
    const left = await until(
      async () => filesIn(imageDir),
      (files) => !files.some((file) => file.includes(".download-")),
      "the end of the agent's download",
    );
    expect(left).toEqual([]);
    await source.close();
  });
});
