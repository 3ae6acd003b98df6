import { createHash } from "node:crypto";
import { access, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { run } from "../exec.js";
import { fillImageCache } from "./image-cache.js";
import { collectImageCacheGarbage } from "./image-cache-gc.js";
import { imageCacheDir, initPrimaryStorage, type VolumeRef, volumeDir } from "./primary.js";
import { makeTempDir } from "./test-helpers.js";
import { takeVolumeSnapshot } from "./volume-snapshots.js";
import { createRootVolume } from "./volumes.js";

const ACCOUNT = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const USED = "11111111111111111111111111111111";
const UNUSED = "22222222222222222222222222222222";
const VOLUME = "33333333333333333333333333333333";
const SNAPSHOT_TOP = "44444444444444444444444444444444";
const rootVolume: VolumeRef & { type: "Root" } = {
  type: "Root",
  accountUuid: ACCOUNT,
  volumeUuid: VOLUME,
};

let source: { dir: string; cleanup: () => Promise<void> };
let primary: { dir: string; cleanup: () => Promise<void> };

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );

async function fill(imageUuid: string) {
  const file = path.join(source.dir, "image.qcow2");
  const sha256 = createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
  return fillImageCache(primary.dir, {
    imageUuid,
    url: pathToFileURL(file).href,
    sha256,
    allowedFilePrefixes: [source.dir],
  });
}

beforeEach(async () => {
  source = await makeTempDir("gc-source");
  primary = await makeTempDir("gc-primary");
  await run("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    path.join(source.dir, "image.qcow2"),
    "1M",
  ]);
  await initPrimaryStorage(primary.dir);
  await fill(USED);
  await fill(UNUSED);
  await createRootVolume(primary.dir, { volume: rootVolume, imageUuid: USED });
});

afterEach(async () => {
  await primary.cleanup();
  await source.cleanup();
});

describe("image cache garbage collection", () => {
  it("deletes an unused entry", async () => {
    const result = await collectImageCacheGarbage(primary.dir, {
      imageUuids: [UNUSED],
      graceSeconds: 0,
    });

    expect(result.deleted).toEqual([UNUSED]);
    expect(result.kept).toEqual([]);
    expect(await exists(imageCacheDir(primary.dir, UNUSED))).toBe(false);
    expect(await exists(imageCacheDir(primary.dir, USED))).toBe(true);
  });

  it("keeps a root volume's backing file", async () => {
    const result = await collectImageCacheGarbage(primary.dir, {
      imageUuids: [USED],
      graceSeconds: 0,
    });

    expect(result.deleted).toEqual([]);
    expect(result.kept).toHaveLength(1);
    expect(result.kept[0]?.imageUuid).toBe(USED);
    expect(result.kept[0]?.reason).toContain(volumeDir(primary.dir, rootVolume));
    expect(await exists(imageCacheDir(primary.dir, USED))).toBe(true);
  });

  it("keeps the base of a snapshot chain", async () => {
    await takeVolumeSnapshot(primary.dir, {
      volume: rootVolume,
      topFileUuid: VOLUME,
      newTopFileUuid: SNAPSHOT_TOP,
    });

    const result = await collectImageCacheGarbage(primary.dir, {
      imageUuids: [USED],
      graceSeconds: 0,
    });

    expect(result.deleted).toEqual([]);
    expect(result.kept.map((entry) => entry.imageUuid)).toEqual([USED]);
    expect(await exists(imageCacheDir(primary.dir, USED))).toBe(true);
  });

  it("keeps an entry within the grace period", async () => {
    const result = await collectImageCacheGarbage(primary.dir, {
      imageUuids: [UNUSED],
      graceSeconds: 3600,
    });

    expect(result.deleted).toEqual([]);
    expect(result.kept[0]?.reason).toContain("grace period");
    expect(await exists(imageCacheDir(primary.dir, UNUSED))).toBe(true);
  });

  it("refills a deleted entry", async () => {
    await collectImageCacheGarbage(primary.dir, { imageUuids: [UNUSED], graceSeconds: 0 });

    const cached = await fill(UNUSED);

    expect(await exists(cached.path)).toBe(true);
  });

  it("fails on an unreadable volume file", async () => {
    await writeFile(path.join(volumeDir(primary.dir, rootVolume), "broken.qcow2"), "not qcow2");

    await expect(
      collectImageCacheGarbage(primary.dir, { imageUuids: [UNUSED], graceSeconds: 0 }),
    ).rejects.toThrow();
    expect(await exists(imageCacheDir(primary.dir, UNUSED))).toBe(true);
  });

  it("rejects invalid options", async () => {
    await expect(
      collectImageCacheGarbage(primary.dir, { imageUuids: ["../x"], graceSeconds: 0 }),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(
      collectImageCacheGarbage(primary.dir, { imageUuids: [UNUSED], graceSeconds: -1 }),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(await exists(imageCacheDir(primary.dir, UNUSED))).toBe(true);
  });
});
