import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMetadataServer, nocloudMetaData } from "./metadata-server.js";

const VM_UUID = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";

// Every 127/8 address is loopback on Linux, so a client bound to 127.0.0.2 plays a second guest.
const GUEST = "127.0.0.1";
const BARE_GUEST = "127.0.0.2";
const STRANGER = "127.0.0.3";

describe("metadata server", () => {
  let dir: string;
  let server: Server;
  let port: number;

  const get = (path: string, from = GUEST) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const options = { host: "127.0.0.1", port, path, localAddress: from };
      request(options, (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      })
        .on("error", reject)
        .end();
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tsd-metadata-"));
    await mkdir(join(dir, GUEST));
    await writeFile(join(dir, GUEST, "instance-id"), VM_UUID);
    await writeFile(join(dir, GUEST, "hostname"), "tsd-vm1");
    await writeFile(join(dir, GUEST, "user-data"), "#cloud-config\nruncmd: [true]\n");
    await mkdir(join(dir, BARE_GUEST));
    await writeFile(join(dir, BARE_GUEST, "instance-id"), "d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2");
    await writeFile(join(dir, BARE_GUEST, "hostname"), "tsd-vm2");

    server = createMetadataServer(dir);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it("serves the NoCloud meta-data as YAML", async () => {
    expect(await get("/nocloud/meta-data")).toEqual({
      status: 200,
      body: `instance-id: "${VM_UUID}"\nlocal-hostname: "tsd-vm1"\n`,
    });
  });

  it("serves the user data as given, and vendor-data empty", async () => {
    expect(await get("/nocloud/user-data")).toEqual({
      status: 200,
      body: "#cloud-config\nruncmd: [true]\n",
    });
    expect(await get("/nocloud/vendor-data")).toEqual({ status: 200, body: "" });
  });

  it("gives a guest without user data an empty cloud-config", async () => {
    expect(await get("/nocloud/user-data", BARE_GUEST)).toEqual({
      status: 200,
      body: "#cloud-config\n",
    });
    expect((await get("/nocloud/meta-data", BARE_GUEST)).body).toContain('"tsd-vm2"');
    expect((await get("/latest/user-data", BARE_GUEST)).status).toBe(404);
  });

  it("answers an unknown guest 404 on every path", async () => {
    for (const path of ["/nocloud/meta-data", "/nocloud/user-data", "/nocloud/vendor-data"]) {
      expect((await get(path, STRANGER)).status).toBe(404);
    }
  });

  it("keeps the EC2-style paths", async () => {
    expect((await get("/latest/meta-data/instance-id")).body).toBe(VM_UUID);
    expect((await get("/latest/meta-data/hostname")).body).toBe("tsd-vm1");
    expect((await get("/latest/user-data")).body).toBe("#cloud-config\nruncmd: [true]\n");
  });

  it("answers 404 for other paths under the seed", async () => {
    expect((await get("/nocloud/network-config")).status).toBe(404);
    expect((await get("/nocloud/../latest/user-data")).status).toBe(404);
  });

  it("quotes values YAML would otherwise read as numbers or booleans", () => {
    expect(nocloudMetaData("1234", "yes")).toBe('instance-id: "1234"\nlocal-hostname: "yes"\n');
    expect(nocloudMetaData(VM_UUID, "")).toBe(`instance-id: "${VM_UUID}"\n`);
  });
});
