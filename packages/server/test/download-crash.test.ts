import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runningAgentPid } from "../src/compute/hosts/local.js";
import { newUuid } from "../src/core/ids.js";
import { buildCloud } from "./cloud.js";
import { ADMIN_PASSWORD, freePort, type TestServer, until } from "./harness.js";
import { exited, launchServer, type ServerProcess } from "./server-process.js";

type Inventory = { uuid: string } & Record<string, unknown>;

const MiB = 1024 * 1024;

/**
 * Serves a raw image over HTTP on 127.0.0.1. Every response sends its first MiB at once and the
 * rest only after `release()`, so the test can see a download in flight without timing it.
 * Responses that start after `release()` send everything at once.
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

describe("image transfers and crashes", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "tstack-download-crash-"));
  const environment = {
    ...process.env,
    TSTACK_ADMIN_PASSWORD: ADMIN_PASSWORD,
    TSTACK_LOG_LEVEL: "warn",
  };
  let port: number;
  let server: ServerProcess;
  let admin: TstackClient;
  let cloud: Awaited<ReturnType<typeof buildCloud>>;

  async function start() {
    server = await launchServer(dataDir, undefined, environment, port);
  }

  async function setConfig(category: string, name: string, value: string) {
    await admin.call("updateGlobalConfig", { path: { category, name }, params: { value } });
  }

  async function queryOne(api: string, uuid: string) {
    return (await admin.query<Inventory>(api, [`uuid=${uuid}`])).inventories[0]!;
  }

  async function jobOutcome(location: string) {
    return admin.waitForJob(location).then(
      () => "succeeded",
      (error: Error) => error.message,
    );
  }

  /** Adds a raw image from `url` without waiting, and returns its uuid and job location. */
  async function addImage(name: string, url: string) {
    const imageUuid = newUuid();
    const accepted = await admin.call<{ location: string }>("addImage", {
      params: {
        name,
        resourceUuid: imageUuid,
        url,
        format: "raw",
        mediaType: "RootVolumeTemplate",
        backupStorageUuids: [cloud.backupStorageUuid],
      },
      noWait: true,
    });
    return { imageUuid, location: accepted.location };
  }

  async function createVm(name: string, imageUuid: string) {
    const vmUuid = newUuid();
    const accepted = await admin.call<{ location: string }>("createVmInstance", {
      params: {
        name,
        resourceUuid: vmUuid,
        imageUuid,
        instanceOfferingUuid: cloud.instanceOfferingUuid,
        l3NetworkUuids: [cloud.l3NetworkUuid],
      },
      noWait: true,
    });
    return { vmUuid, location: accepted.location };
  }

  beforeAll(async () => {
    port = await freePort();
    await start();
    admin = new TstackClient({ endpoint: server.url, pollIntervalMs: 50 });
    await admin.logInByAccount("admin", ADMIN_PASSWORD);
    cloud = await buildCloud({ admin } as unknown as TestServer, "172.30.94.0/24");
  }, 300_000);

  afterAll(async () => {
    if (server?.child.exitCode === null && server.child.signalCode === null) {
      await cloud?.cleanup();
      server.child.kill("SIGTERM");
      await exited(server.child);
    }

    rmSync(dataDir, { recursive: true, force: true });
  });

  it("fails a download cut by a node crash", async () => {
    const store = await queryOne("queryBackupStorage", cloud.backupStorageUuid);
    const source = await serveHeldImage(4 * MiB);
    const { imageUuid, location } = await addImage("held", source.url);
    const imageDir = join(String(store.url), "images", imageUuid);
    await until(
      async () => filesIn(imageDir),
      (files) => files.some((file) => file.includes(".download-")),
      "the download's temporary file",
    );

    server.child.kill("SIGKILL");
    await exited(server.child);
    await start();

    expect(await jobOutcome(location)).toMatch(/restarted/);
    expect((await admin.query("queryApiJob", ["state=Running"])).inventories).toEqual([]);
    const image = await queryOne("queryImage", imageUuid);
    expect(image.status).toBe("Error");
    expect(String(image.lastError)).toMatch(/restarted before the image was stored/);
    const refs = image.backupStorageRefs as Inventory[];
    expect(refs.map((ref) => ref.status)).toEqual(["Error"]);

    // The source now sends the rest, so an agent that kept downloading would store the image.
    source.release();
    await source.responses[0]!.closed;
    // Start-up sends the delete without waiting for it, so the files may go a little later.
    const left = await until(
      async () => filesIn(imageDir),
      (files) => files.length === 0,
      "the removal of the image's files",
    );
    expect(left).toEqual([]);
    await source.close();
  });

  it("fails a cache fill cut by an agent kill", async () => {
    const source = await serveHeldImage(64 * MiB);
    source.release();
    const { imageUuid, location } = await addImage("large", source.url);
    expect(await jobOutcome(location)).toBe("succeeded");
    await source.close();

    const primary = await queryOne("queryPrimaryStorage", cloud.primaryStorageUuid);
    const cacheDir = join(String(primary.url), "imagecache", "template", imageUuid);
    const hostBefore = await queryOne("queryHost", cloud.hostUuid);
    // Pings every second find the killed agent soon, and the node then starts it again. The node
    // reads the interval when it starts.
    await setConfig("host", "ping.interval", "1");
    server.child.kill("SIGTERM");
    await exited(server.child);
    await start();

    const { vmUuid, location: createLocation } = await createVm("cut-fill", imageUuid);
    await until(
      async () => filesIn(cacheDir),
      (files) => files.some((file) => file.includes(".download-")),
      "the cache fill's temporary file",
      120_000,
    );
    process.kill(runningAgentPid(cloud.agentDir)!, "SIGKILL");
    // The kill landed mid-transfer only if the temporary file outlived the agent.
    expect(filesIn(cacheDir).some((file) => file.includes(".download-"))).toBe(true);

    expect(await jobOutcome(createLocation)).toMatch(/the agent restarted and lost the task/);
    expect((await admin.query("queryVmInstance", [`uuid=${vmUuid}`])).inventories).toEqual([]);
    expect((await admin.query("queryVolume", [`vmInstanceUuid=${vmUuid}`])).inventories).toEqual(
      [],
    );
    const cacheRows = await admin.query<Inventory>("queryImageCache", [`imageUuid=${imageUuid}`]);
    expect(cacheRows.inventories).toEqual([]);
    const hostAfter = await queryOne("queryHost", cloud.hostUuid);
    expect(hostAfter.availableMemoryCapacity).toBe(hostBefore.availableMemoryCapacity);
    expect(hostAfter.availableCpuCapacity).toBe(hostBefore.availableCpuCapacity);

    // A retry fills the cache again over the debris of the killed agent.
    const retry = await createVm("after-fill", imageUuid);
    expect(await jobOutcome(retry.location)).toBe("succeeded");
    expect(filesIn(cacheDir).filter((file) => file.startsWith("."))).toEqual([]);
    expect(filesIn(cacheDir)).toContain(`${imageUuid}.qcow2`);
    await admin.call("destroyVmInstance", { path: { uuid: retry.vmUuid } });
    await admin.call("expungeVmInstance", { path: { uuid: retry.vmUuid }, params: {} });
    await setConfig("host", "ping.interval", "60");
  }, 300_000);
});
