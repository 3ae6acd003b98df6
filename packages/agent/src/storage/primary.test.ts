import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { access, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { run } from "../exec.js";
import { fillImageCache, findCachedImage } from "./image-cache.js";
import { addImage, initImageStore, type StoredImage } from "./image-store.js";
import { imageStoreHttp } from "./image-store-http.js";
import { signedImageUrl } from "./image-store-token.js";
import {
  imageCacheFile,
  initPrimaryStorage,
  primaryStorageCapacity,
  type VolumeRef,
  volumeFile,
} from "./primary.js";
import { imageInfo } from "./qemu-img.js";
import { removeSmpMarker, verifySmpMarker, writeSmpMarker } from "./smp-marker.js";
import { hasGuestPattern, makeTempDir, writeGuestPattern } from "./test-helpers.js";
import {
  deleteVolumeSnapshot,
  listVolumeFiles,
  revertVolumeSnapshot,
  takeVolumeSnapshot,
} from "./volume-snapshots.js";
import { createDataVolume, createRootVolume, deleteVolume, growVolume } from "./volumes.js";

const MiB = 1024 * 1024;
const SECRET = "primary-test-secret";
const ACCOUNT = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const QCOW2_IMAGE = "11111111111111111111111111111111";
const RAW_IMAGE = "22222222222222222222222222222222";
const uuid = (digit: string) => digit.repeat(32);

let store: { dir: string; cleanup: () => Promise<void> };
let storeApp: FastifyInstance;
let storeUrl: string;
let imageRequests = 0;
const images = new Map<string, StoredImage>();

let primary: { dir: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  store = await makeTempDir("primary-store");
  await initImageStore(store.dir);
  const raw = path.join(store.dir, "seed.raw");
  const qcow2 = path.join(store.dir, "seed.qcow2");
  await writeFile(raw, randomBytes(4 * MiB));
  await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2]);

  for (const [imageUuid, file] of [
    [QCOW2_IMAGE, qcow2],
    [RAW_IMAGE, raw],
  ] as const) {
    const url = pathToFileURL(file).href;
    const image = await addImage(store.dir, { imageUuid, url, allowedFilePrefixes: [store.dir] });
    images.set(imageUuid, image);
  }

  storeApp = Fastify();
  storeApp.addHook("onRequest", async () => {
    imageRequests++;
  });
  await storeApp.register(imageStoreHttp, { root: store.dir, secret: SECRET });
  await storeApp.listen({ host: "127.0.0.1", port: 0 });
  storeUrl = `http://127.0.0.1:${(storeApp.server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await storeApp.close();
  await store.cleanup();
});

beforeEach(async () => {
  primary = await makeTempDir("primary");
  await initPrimaryStorage(primary.dir);
  imageRequests = 0;
});

afterEach(async () => {
  await primary.cleanup();
});

function fill(imageUuid: string, overrides: { sha256?: string } = {}) {
  const image = images.get(imageUuid)!;
  const url = signedImageUrl(storeUrl, SECRET, image, 60);
  const sha256 = overrides.sha256 ?? image.sha256;
  return fillImageCache(primary.dir, { imageUuid, url, sha256, allowLoopback: true });
}

function rootVolume(volumeUuid: string): VolumeRef & { type: "Root" } {
  return { type: "Root", accountUuid: ACCOUNT, volumeUuid };
}

describe("primary storage capacity", () => {
  it("reports the filesystem and the bytes in use", async () => {
    const before = await primaryStorageCapacity(primary.dir);
    await fill(QCOW2_IMAGE);
    const after = await primaryStorageCapacity(primary.dir);

    expect(before.totalPhysicalCapacity).toBeGreaterThan(0);
    expect(before.availablePhysicalCapacity).toBeLessThanOrEqual(before.totalPhysicalCapacity);
    expect(before.usedPhysicalCapacity).toBe(0);
    expect(after.usedPhysicalCapacity).toBeGreaterThan(4 * MiB);
  });
});

describe("primary storage init", () => {
  it("removes abandoned download files", async () => {
    const dir = path.join(primary.dir, "imagecache/template", randomBytes(16).toString("hex"));
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, ".source.download-0123456789ab"), "partial");
    await writeFile(path.join(dir, "source.qcow2"), "kept");

    await initPrimaryStorage(primary.dir);

    expect(await readdir(dir)).toEqual(["source.qcow2"]);
  });
});

describe("image cache", () => {
  it("fills from an image store URL in the template layout", async () => {
    const cached = await fill(QCOW2_IMAGE);

    const expected = path.join(
      primary.dir,
      "imagecache/template",
      QCOW2_IMAGE,
      `${QCOW2_IMAGE}.qcow2`,
    );
    expect(cached.path).toBe(expected);
    expect(cached.virtualSize).toBe(4 * MiB);
    expect(cached.sourceSha256).toBe(images.get(QCOW2_IMAGE)!.sha256);
    expect(await findCachedImage(primary.dir, QCOW2_IMAGE)).toEqual(cached);
  });

  it("converts a raw image to qcow2", async () => {
    const cached = await fill(RAW_IMAGE);

    const info = await imageInfo(cached.path, { allowedDirs: [] });
    expect(info.format).toBe("qcow2");
    expect(cached.sourceFormat).toBe("raw");
    expect(await readdir(path.dirname(cached.path))).toEqual([
      `${RAW_IMAGE}.json`,
      `${RAW_IMAGE}.qcow2`,
      `overlay-${info.virtualSize}.qcow2`,
    ]);
  });

  it("copies once for concurrent fills", async () => {
    const results = await Promise.all([fill(QCOW2_IMAGE), fill(QCOW2_IMAGE), fill(QCOW2_IMAGE)]);
    await fill(QCOW2_IMAGE);

    expect(imageRequests).toBe(1);
    expect(results[1]).toBe(results[0]);
    expect(results[2]).toBe(results[0]);
  });

  it("fills from a local path", async () => {
    const url = pathToFileURL(path.join(store.dir, "seed.qcow2")).href;
    const sha256 = images.get(QCOW2_IMAGE)!.sha256;

    const cached = await fillImageCache(primary.dir, {
      imageUuid: QCOW2_IMAGE,
      url,
      sha256,
      allowedFilePrefixes: [store.dir],
    });

    expect(cached.sourceSha256).toBe(sha256);
    expect(imageRequests).toBe(0);
  });

  it("rejects a checksum mismatch and keeps nothing", async () => {
    await expect(fill(QCOW2_IMAGE, { sha256: "0".repeat(64) })).rejects.toThrow(
      /has SHA-256 [0-9a-f]{64}, expected 0{64}/,
    );

    await expect(access(path.dirname(imageCacheFile(primary.dir, QCOW2_IMAGE)))).rejects.toThrow();
  });

  it("requires an expected checksum", async () => {
    const url = signedImageUrl(storeUrl, SECRET, images.get(QCOW2_IMAGE)!, 60);
    const promise = fillImageCache(primary.dir, { imageUuid: QCOW2_IMAGE, url });

    await expect(promise).rejects.toThrow("has no expected checksum");
  });
});

describe("volumes", () => {
  it("creates a root volume as an overlay on the cache", async () => {
    const cached = await fill(QCOW2_IMAGE);
    const volume = rootVolume(uuid("3"));

    const started = performance.now();
    const created = await createRootVolume(primary.dir, { volume, imageUuid: QCOW2_IMAGE });
    const elapsed = performance.now() - started;
    // Reported, not asserted: timings depend on the machine's load.
    console.log(`root volume overlay created in ${elapsed.toFixed(1)} ms`);

    const expected = path.join(primary.dir, `rootVolumes/acct-${ACCOUNT}/vol-${volume.volumeUuid}`);
    expect(created.path).toBe(path.join(expected, `${volume.volumeUuid}.qcow2`));
    expect(created.backingFile).toBe(cached.path);
    expect(created.virtualSize).toBe(4 * MiB);
  });

  it("copies exactly what qemu-img create makes", async () => {
    const cached = await fill(QCOW2_IMAGE);
    const reference = path.join(primary.dir, "reference.qcow2");
    await run("qemu-img", [
      ...["create", "-q", "-f", "qcow2", "-b", cached.path, "-F", "qcow2"],
      ...[reference, String(16 * MiB)],
    ]);

    const created = await createRootVolume(primary.dir, {
      volume: rootVolume(uuid("7")),
      imageUuid: QCOW2_IMAGE,
      size: 16 * MiB,
    });

    expect(Buffer.compare(await readFile(created.path), await readFile(reference))).toBe(0);
    const info = await imageInfo(created.path, { allowedDirs: [primary.dir], format: "qcow2" });
    expect(info.backingFile).toBe(cached.path);
    expect(info.virtualSize).toBe(created.virtualSize);
    expect(info.actualSize).toBe(created.actualSize);
  });

  it("creates a bigger root volume and rejects a smaller one", async () => {
    await fill(QCOW2_IMAGE);

    const bigger = await createRootVolume(primary.dir, {
      volume: rootVolume(uuid("4")),
      imageUuid: QCOW2_IMAGE,
      size: 16 * MiB,
    });
    const smaller = createRootVolume(primary.dir, {
      volume: rootVolume(uuid("5")),
      imageUuid: QCOW2_IMAGE,
      size: MiB,
    });

    expect(bigger.virtualSize).toBe(16 * MiB);
    await expect(smaller).rejects.toThrow("is smaller than image");
  });

  it("returns the existing root volume on a retry", async () => {
    await fill(QCOW2_IMAGE);
    const options = { volume: rootVolume(uuid("6")), imageUuid: QCOW2_IMAGE };

    const first = await createRootVolume(primary.dir, options);

    expect(await createRootVolume(primary.dir, options)).toEqual(first);
  });

  it("rejects a root volume on an uncached image", async () => {
    const promise = createRootVolume(primary.dir, {
      volume: rootVolume(uuid("7")),
      imageUuid: RAW_IMAGE,
    });

    await expect(promise).rejects.toThrow("is not in the image cache");
    await expect(
      access(path.join(primary.dir, "rootVolumes", `acct-${ACCOUNT}`)),
    ).rejects.toThrow();
  });

  it("creates and deletes a data volume", async () => {
    const volume = { type: "Data" as const, accountUuid: ACCOUNT, volumeUuid: uuid("8") };

    const created = await createDataVolume(primary.dir, { volume, size: 8 * MiB });
    expect(created.virtualSize).toBe(8 * MiB);
    expect(created.path).toContain(`dataVolumes/acct-${ACCOUNT}/vol-${volume.volumeUuid}/`);

    await deleteVolume(primary.dir, volume);
    await deleteVolume(primary.dir, volume);
    await expect(access(created.path)).rejects.toThrow();
  });

  it("grows a root volume's overlay and rejects a shrink", async () => {
    await fill(QCOW2_IMAGE);
    const volume = rootVolume(uuid("a"));
    const created = await createRootVolume(primary.dir, { volume, imageUuid: QCOW2_IMAGE });
    await writeGuestPattern(created.path, 0, 0x5a);

    const grown = await growVolume(primary.dir, volume, volume.volumeUuid, 32 * MiB);
    expect(grown.virtualSize).toBe(32 * MiB);
    expect(grown.backingFile).toBe(created.backingFile);
    expect(await hasGuestPattern(created.path, 0, 0x5a)).toBe(true);
    expect((await growVolume(primary.dir, volume, volume.volumeUuid, 32 * MiB)).virtualSize).toBe(
      32 * MiB,
    );

    await expect(growVolume(primary.dir, volume, volume.volumeUuid, 8 * MiB)).rejects.toThrow(
      /cannot shrink volume a{32} from 33554432 to 8388608 bytes/,
    );
  });

  it("rejects uuids that could escape the layout", async () => {
    const volume = { type: "Data" as const, accountUuid: "../..", volumeUuid: uuid("9") };

    await expect(createDataVolume(primary.dir, { volume, size: MiB })).rejects.toThrow(
      'invalid account UUID "../.."',
    );
  });
});

/** Waits until plain `qemu-img info` fails on `file`, because another process locked it. */
async function waitForLock(file: string) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const locked = await new Promise<boolean>((resolve) => {
      execFile("qemu-img", ["info", file], (error) => resolve(error !== null));
    });

    if (locked) {
      return;
    }

    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  throw new Error(`${file} was not locked within 10 s`);
}

describe("volume snapshots", () => {
  const volume = rootVolume(uuid("c"));
  const [first, second, third, fourth] = ["d", "e", "f", "0"].map(uuid) as [
    string,
    string,
    string,
    string,
  ];

  beforeEach(async () => {
    await fill(QCOW2_IMAGE);
    await createRootVolume(primary.dir, { volume, imageUuid: QCOW2_IMAGE });
  });

  it("freezes the top and continues in a new overlay", async () => {
    const top = volumeFile(primary.dir, volume, volume.volumeUuid);
    await writeGuestPattern(top, 0, 1);

    const taken = await takeVolumeSnapshot(primary.dir, {
      volume,
      topFileUuid: volume.volumeUuid,
      newTopFileUuid: first,
    });
    await writeGuestPattern(taken.newTop.path, 0, 2);

    expect(taken.snapshot.path).toBe(top);
    expect(taken.newTop.backingFile).toBe(top);
    expect(await hasGuestPattern(top, 0, 1)).toBe(true);
    expect(await hasGuestPattern(taken.newTop.path, 0, 2)).toBe(true);
  });

  it("reverts to a snapshot and drops the old top", async () => {
    const top = volumeFile(primary.dir, volume, volume.volumeUuid);
    await writeGuestPattern(top, 0, 1);
    const taken = await takeVolumeSnapshot(primary.dir, {
      volume,
      topFileUuid: volume.volumeUuid,
      newTopFileUuid: first,
    });
    await writeGuestPattern(taken.newTop.path, 0, 2);

    const reverted = await revertVolumeSnapshot(primary.dir, {
      volume,
      snapshotFileUuid: volume.volumeUuid,
      currentTopFileUuid: first,
      newTopFileUuid: second,
    });

    expect(await hasGuestPattern(reverted.path, 0, 1)).toBe(true);
    const names = (await listVolumeFiles(primary.dir, volume)).map((file) => file.fileUuid);
    expect(names.sort()).toEqual([volume.volumeUuid, second].sort());
  });

  it("deletes a snapshot by merging it into its child", async () => {
    const base = volumeFile(primary.dir, volume, volume.volumeUuid);
    await writeGuestPattern(base, 0, 1);
    await takeVolumeSnapshot(primary.dir, {
      volume,
      topFileUuid: volume.volumeUuid,
      newTopFileUuid: first,
    });
    await writeGuestPattern(volumeFile(primary.dir, volume, first), 65536, 2);
    const { newTop } = await takeVolumeSnapshot(primary.dir, {
      volume,
      topFileUuid: first,
      newTopFileUuid: second,
    });

    const result = await deleteVolumeSnapshot(primary.dir, {
      volume,
      snapshotFileUuid: first,
      currentTopFileUuid: second,
    });

    expect(result.rebasedFileUuids).toEqual([second]);
    await expect(access(volumeFile(primary.dir, volume, first))).rejects.toThrow();
    const top = (await listVolumeFiles(primary.dir, volume)).find((f) => f.fileUuid === second)!;
    expect(top.backingFile).toBe(base);
    expect(await hasGuestPattern(newTop.path, 0, 1)).toBe(true);
    expect(await hasGuestPattern(newTop.path, 65536, 2)).toBe(true);
  });

  it("deletes the base snapshot by rebasing onto the image cache", async () => {
    const base = volumeFile(primary.dir, volume, volume.volumeUuid);
    await writeGuestPattern(base, 0, 3);
    await takeVolumeSnapshot(primary.dir, {
      volume,
      topFileUuid: volume.volumeUuid,
      newTopFileUuid: third,
    });

    await deleteVolumeSnapshot(primary.dir, {
      volume,
      snapshotFileUuid: volume.volumeUuid,
      currentTopFileUuid: third,
    });

    const top = volumeFile(primary.dir, volume, third);
    const info = await imageInfo(top, { allowedDirs: [primary.dir] });
    expect(info.backingFile).toBe(imageCacheFile(primary.dir, QCOW2_IMAGE));
    expect(await hasGuestPattern(top, 0, 3)).toBe(true);
  });

  it("takes a snapshot over a partial file of a killed agent", async () => {
    const partial = `${volumeFile(primary.dir, volume, first)}.part`;
    await writeFile(partial, "cut short");
    const options = { volume, topFileUuid: volume.volumeUuid, newTopFileUuid: first };

    const taken = await takeVolumeSnapshot(primary.dir, options);
    const again = await takeVolumeSnapshot(primary.dir, options);

    expect(again).toEqual(taken);
    await expect(access(partial)).rejects.toThrow();
    const names = (await listVolumeFiles(primary.dir, volume)).map((file) => file.fileUuid);
    expect(names.sort()).toEqual([volume.volumeUuid, first].sort());
  });

  it("lists the files of a volume a running QEMU has locked", async () => {
    const top = volumeFile(primary.dir, volume, volume.volumeUuid);
    const holder = spawn("qemu-io", ["-f", "qcow2", top], { stdio: ["pipe", "ignore", "ignore"] });

    try {
      // qemu-io holds the image's write lock while it waits for commands on stdin.
      await waitForLock(top);
      const files = await listVolumeFiles(primary.dir, volume);
      expect(files.map((file) => file.fileUuid)).toEqual([volume.volumeUuid]);
    } finally {
      holder.kill();
    }
  });

  it("refuses to delete the current top", async () => {
    const promise = deleteVolumeSnapshot(primary.dir, {
      volume,
      snapshotFileUuid: fourth,
      currentTopFileUuid: fourth,
    });

    await expect(promise).rejects.toThrow("it is the volume's current top, not a snapshot");
  });
});

describe("shared mount point marker", () => {
  it("verifies a marker on the same filesystem only", async () => {
    const other = await makeTempDir("primary-other");
    const markerUuid = uuid("b");

    try {
      const token = await writeSmpMarker(primary.dir, markerUuid);

      expect(await verifySmpMarker(primary.dir, markerUuid, token)).toBe(true);
      expect(await verifySmpMarker(other.dir, markerUuid, token)).toBe(false);
      expect(await verifySmpMarker(primary.dir, markerUuid, "0".repeat(32))).toBe(false);

      await removeSmpMarker(primary.dir, markerUuid);
      expect(await verifySmpMarker(primary.dir, markerUuid, token)).toBe(false);
    } finally {
      await other.cleanup();
    }
  });
});
