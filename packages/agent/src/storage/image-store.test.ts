import { createHash, randomBytes } from "node:crypto";
import { access, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { run } from "../exec.js";
import { downloadImage } from "./download.js";
import {
  addImage,
  deleteImage,
  getImage,
  imageStoreCapacity,
  initImageStore,
  storedImageDir,
} from "./image-store.js";
import { imageStoreHttp, parseRange } from "./image-store-http.js";
import { signedImageUrl } from "./image-store-token.js";
import { makeTempDir } from "./test-helpers.js";

const MiB = 1024 * 1024;
const SECRET = "test-secret-for-image-store";
const IMAGE_UUID = "0123456789abcdef0123456789abcdef";
const OTHER_UUID = "fedcba9876543210fedcba9876543210";

let fixtures: { dir: string; cleanup: () => Promise<void> };
let imageUrl: string;
let imageBytes: Buffer;
let store: { dir: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  fixtures = await makeTempDir("store-fixtures");
  const raw = path.join(fixtures.dir, "seed.raw");
  const qcow2 = path.join(fixtures.dir, "seed.qcow2");
  await writeFile(raw, randomBytes(2 * MiB));
  await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2]);
  imageBytes = await readFile(qcow2);
  imageUrl = pathToFileURL(qcow2).href;
});

afterAll(async () => {
  await fixtures.cleanup();
});

beforeEach(async () => {
  store = await makeTempDir("store");
  await initImageStore(store.dir);
});

afterEach(async () => {
  await store.cleanup();
});

function add(imageUuid = IMAGE_UUID, url = imageUrl) {
  return addImage(store.dir, { imageUuid, url, allowedFilePrefixes: [fixtures.dir] });
}

function sha256(data: Buffer) {
  return createHash("sha256").update(data).digest("hex");
}

describe("image store", () => {
  it("stores an image with metadata in the uuid layout", async () => {
    const image = await add();

    expect(image.format).toBe("qcow2");
    expect(image.sha256).toBe(sha256(imageBytes));
    expect(image.virtualSize).toBe(2 * MiB);
    const dir = path.join(store.dir, "images", IMAGE_UUID);
    expect((await readdir(dir)).sort()).toEqual([`${IMAGE_UUID}.json`, `${IMAGE_UUID}.qcow2`]);
    expect(await getImage(store.dir, IMAGE_UUID)).toEqual(image);
  });

  it("returns the stored image on a retry", async () => {
    const first = await add();

    expect(await add()).toEqual(first);
  });

  it("shares one download between concurrent adds", async () => {
    const [first, second] = await Promise.all([add(), add()]);

    expect(second).toBe(first);
  });

  it("rejects the same uuid from another URL", async () => {
    await add();
    const other = pathToFileURL(path.join(fixtures.dir, "seed.raw")).href;

    await expect(add(IMAGE_UUID, other)).rejects.toThrow(`image ${IMAGE_UUID} already exists`);
  });

  it("leaves nothing behind after a failed add", async () => {
    await expect(add(IMAGE_UUID, "ftp://example.invalid/x.qcow2")).rejects.toThrow("ftp:");

    await expect(access(storedImageDir(store.dir, IMAGE_UUID))).rejects.toThrow("ENOENT");
  });

  it("deletes an image and accepts a repeated delete", async () => {
    await add();

    await deleteImage(store.dir, IMAGE_UUID);
    await deleteImage(store.dir, IMAGE_UUID);

    await expect(getImage(store.dir, IMAGE_UUID)).rejects.toThrow("not found in image store");
  });

  it("aborts a running add on delete", async () => {
    // The source sends half of the image and then nothing, so the add stays in flight.
    const source = createServer((_request, response) => {
      response.writeHead(200, { "content-length": imageBytes.length });
      response.write(imageBytes.subarray(0, imageBytes.length / 2));
    });
    await new Promise<void>((done) => source.listen(0, "127.0.0.1", done));
    const { port } = source.address() as AddressInfo;
    const url = `http://127.0.0.1:${port}/held.qcow2`;
    const dir = storedImageDir(store.dir, IMAGE_UUID);
    const adding = addImage(store.dir, { imageUuid: IMAGE_UUID, url, allowLoopback: true });
    const outcome = adding.catch((error: Error) => error);

    while (!(await readdir(dir).catch(() => [])).some((file) => file.includes(".download-"))) {
      await new Promise((done) => setTimeout(done, 20));
    }
    await deleteImage(store.dir, IMAGE_UUID);

    expect(String(await outcome)).toMatch(`download of ${url} was aborted`);
    await expect(access(dir)).rejects.toThrow("ENOENT");
    source.closeAllConnections();
    source.close();
  });

  it("rejects a uuid that is not 32 hex characters", async () => {
    await expect(add("../../etc")).rejects.toThrow('invalid image UUID "../../etc"');
  });

  it("reports the filesystem capacity", async () => {
    const capacity = await imageStoreCapacity(store.dir);

    expect(capacity.totalCapacity).toBeGreaterThan(0);
    expect(capacity.availableCapacity).toBeGreaterThan(0);
    expect(capacity.availableCapacity).toBeLessThanOrEqual(capacity.totalCapacity);
  });
});

describe("image store over HTTP", () => {
  let app: FastifyInstance;
  let baseUrl: string;
  let host: { dir: string; cleanup: () => Promise<void> };

  beforeEach(async () => {
    await add();
    host = await makeTempDir("store-host");
    app = Fastify();
    await app.register(imageStoreHttp, { prefix: "/imagestore", root: store.dir, secret: SECRET });
    await app.listen({ host: "127.0.0.1", port: 0 });
    baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/imagestore`;
  });

  afterEach(async () => {
    await app.close();
    await host.cleanup();
  });

  function fetchOnHost(url: string) {
    return downloadImage({ url, dir: host.dir, baseName: "copy", allowLoopback: true });
  }

  it("serves the image to a host with a good token", async () => {
    const url = signedImageUrl(baseUrl, SECRET, { imageUuid: IMAGE_UUID, format: "qcow2" }, 60);

    const copy = await fetchOnHost(url);

    expect(copy.sha256).toBe(sha256(imageBytes));
    expect(copy.format).toBe("qcow2");
  });

  it("rejects a token signed with another secret", async () => {
    const image = { imageUuid: IMAGE_UUID, format: "qcow2" as const };
    const url = signedImageUrl(baseUrl, "wrong-secret", image, 60);

    await expect(fetchOnHost(url)).rejects.toThrow("returned HTTP 403");
    expect(await readdir(host.dir)).toEqual([]);
  });

  it("rejects an expired token", async () => {
    const image = { imageUuid: IMAGE_UUID, format: "qcow2" as const };
    const url = signedImageUrl(baseUrl, SECRET, image, 60, Date.now() - 3600_000);

    await expect(fetchOnHost(url)).rejects.toThrow("returned HTTP 403");
  });

  it("rejects a token moved to another image", async () => {
    const image = { imageUuid: IMAGE_UUID, format: "qcow2" as const };
    const url = signedImageUrl(baseUrl, SECRET, image, 60).replaceAll(IMAGE_UUID, OTHER_UUID);

    const response = await fetch(url);

    expect(response.status).toBe(403);
  });

  it("answers 404 for paths outside the uuid layout", async () => {
    const image = { imageUuid: IMAGE_UUID, format: "qcow2" as const };
    const query = new URL(signedImageUrl(baseUrl, SECRET, image, 60)).search;
    const paths = [
      `/images/${IMAGE_UUID}/..%2F..%2F${IMAGE_UUID}.json`,
      `/images/${IMAGE_UUID}/${IMAGE_UUID}.json`,
      "/images/..%2F..%2Fetc/passwd",
    ];

    for (const requestPath of paths) {
      const response = await fetch(`${baseUrl}${requestPath}${query}`);
      expect(response.status, requestPath).toBe(404);
    }
  });

  it("rejects a token used for another format", async () => {
    const image = { imageUuid: IMAGE_UUID, format: "qcow2" as const };
    const url = signedImageUrl(baseUrl, SECRET, image, 60).replace(".qcow2?", ".raw?");

    const response = await fetch(url);

    expect(response.status).toBe(403);
  });

  it("serves a byte range", async () => {
    const url = signedImageUrl(baseUrl, SECRET, { imageUuid: IMAGE_UUID, format: "qcow2" }, 60);

    const response = await fetch(url, { headers: { range: "bytes=100-199" } });

    expect(response.status).toBe(206);
    expect(response.headers.get("content-range")).toBe(`bytes 100-199/${imageBytes.length}`);
    expect(Buffer.from(await response.arrayBuffer())).toEqual(imageBytes.subarray(100, 200));
  });

  it("answers 416 for a range past the end", async () => {
    const url = signedImageUrl(baseUrl, SECRET, { imageUuid: IMAGE_UUID, format: "qcow2" }, 60);

    const response = await fetch(url, { headers: { range: `bytes=${imageBytes.length}-` } });

    expect(response.status).toBe(416);
    expect(response.headers.get("content-range")).toBe(`bytes */${imageBytes.length}`);
  });

  it("answers HEAD with the size", async () => {
    const url = signedImageUrl(baseUrl, SECRET, { imageUuid: IMAGE_UUID, format: "qcow2" }, 60);

    const response = await fetch(url, { method: "HEAD" });

    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(imageBytes.length));
    expect(response.headers.get("accept-ranges")).toBe("bytes");
  });
});

describe("parseRange", () => {
  it.each([
    ["bytes=0-9", { start: 0, end: 9 }],
    ["bytes=90-", { start: 90, end: 99 }],
    ["bytes=-10", { start: 90, end: 99 }],
    ["bytes=-500", { start: 0, end: 99 }],
    ["bytes=50-5000", { start: 50, end: 99 }],
    ["bytes=100-", "unsatisfiable"],
    ["bytes=-0", "unsatisfiable"],
    ["bytes=9-0", undefined],
    ["bytes=0-1,5-6", undefined],
    ["items=0-1", undefined],
  ])("parses %s for 100 bytes", (header, expected) => {
    expect(parseRange(header, 100)).toEqual(expected);
  });
});
