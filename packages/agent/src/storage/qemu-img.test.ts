import { open, symlink, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { run } from "../exec.js";
import { StorageError } from "./errors.js";
import { createOverlay } from "./overlay.js";
import {
  backingChain,
  checkImage,
  commitImage,
  convertImage,
  createImage,
  imageInfo,
  measureImage,
  rebaseImage,
  resizeImage,
} from "./qemu-img.js";
import { makeTempDir } from "./test-helpers.js";

const MiB = 1024 * 1024;

let dir: string;
let cleanup: () => Promise<void>;

beforeEach(async () => {
  ({ dir, cleanup } = await makeTempDir("qemu-img"));
});

afterEach(async () => {
  await cleanup();
});

/** Writes `text` at `offset` of the guest-visible disk through qemu-io. */
async function writeGuestData(file: string, offset: number, text: string) {
  const pattern = text.charCodeAt(0);
  await run("qemu-io", ["-f", "qcow2", "-c", `write -P ${pattern} ${offset} 64k`, file]);
}

/** Reads 64 KiB at `offset` through the chain and checks every byte equals `text`'s first. */
async function expectGuestData(file: string, offset: number, text: string) {
  const pattern = text.charCodeAt(0);
  const result = await run("qemu-io", [
    "-f",
    "qcow2",
    "-c",
    `read -P ${pattern} ${offset} 64k`,
    file,
  ]);
  expect(result.stdout).not.toContain("Pattern verification failed");
}

describe("imageInfo", () => {
  it("reports format, sizes and backing file", async () => {
    const base = path.join(dir, "base.qcow2");
    const top = path.join(dir, "top.qcow2");
    await createImage(base, { format: "qcow2", size: 64 * MiB });
    await createImage(top, { format: "qcow2", backingFile: base, backingFormat: "qcow2" });

    const info = await imageInfo(top, { allowedDirs: [dir], format: "qcow2" });

    expect(info.format).toBe("qcow2");
    expect(info.virtualSize).toBe(64 * MiB);
    expect(info.actualSize).toBeGreaterThan(0);
    expect(info.backingFile).toBe(base);
    expect(info.backingFormat).toBe("qcow2");
    expect(info.corrupt).toBe(false);
  });

  it("rejects a backing file outside the allowed directories", async () => {
    const other = await makeTempDir("qemu-img-other");

    try {
      const base = path.join(other.dir, "base.qcow2");
      const top = path.join(dir, "top.qcow2");
      await createImage(base, { format: "qcow2", size: MiB });
      await createImage(top, { format: "qcow2", backingFile: base, backingFormat: "qcow2" });

      await expect(imageInfo(top, { allowedDirs: [dir] })).rejects.toThrow(
        `image ${top} references backing file ${base} outside ${dir}`,
      );
      await expect(imageInfo(top, { allowedDirs: [] })).rejects.toThrow("but none is allowed");
    } finally {
      await other.cleanup();
    }
  });

  it("rejects a backing file reached through a symlink out", async () => {
    const other = await makeTempDir("qemu-img-other");

    try {
      const outside = path.join(other.dir, "secret.qcow2");
      const link = path.join(dir, "link.qcow2");
      const top = path.join(dir, "top.qcow2");
      await createImage(outside, { format: "qcow2", size: MiB });
      await symlink(outside, link);
      await createImage(top, { format: "qcow2", backingFile: link, backingFormat: "qcow2" });

      await expect(imageInfo(top, { allowedDirs: [dir] })).rejects.toThrow(StorageError);
    } finally {
      await other.cleanup();
    }
  });

  it("rejects a qcow2 external data file", async () => {
    const file = path.join(dir, "data-file.qcow2");
    const args = ["create", "-q", "-f", "qcow2", "-o", `data_file=${dir}/ext.raw`, file, "1M"];
    await run("qemu-img", args);

    await expect(imageInfo(file, { allowedDirs: [] })).rejects.toThrow(
      /references external data file .*ext\.raw but none is allowed/,
    );
  });

  it("rejects formats other than qcow2 and raw", async () => {
    const file = path.join(dir, "disk.vmdk");
    await run("qemu-img", ["create", "-q", "-f", "vmdk", file, "1M"]);

    await expect(imageInfo(file, { allowedDirs: [] })).rejects.toThrow(
      "has format vmdk; only qcow2 and raw are supported",
    );
  });
});

describe("backingChain", () => {
  it("lists the chain from top to base", async () => {
    const files = ["a", "b", "c"].map((name) => path.join(dir, `${name}.qcow2`));
    await createImage(files[0]!, { format: "qcow2", size: MiB });
    await createOverlay(files[0]!, files[1]!, { allowedDirs: [dir] });
    await createOverlay(files[1]!, files[2]!, { allowedDirs: [dir] });

    const chain = await backingChain(files[2]!, { allowedDirs: [dir] });

    expect(chain.map((info) => info.path)).toEqual([files[2], files[1], files[0]]);
  });
});

describe("checkImage", () => {
  it("accepts an intact qcow2 image", async () => {
    const file = path.join(dir, "ok.qcow2");
    await createImage(file, { format: "qcow2", size: MiB });
    await writeGuestData(file, 0, "a");

    await expect(checkImage(file, "qcow2")).resolves.toMatchObject({ leaks: 0 });
  });

  it("rejects a truncated qcow2 image with the reason", async () => {
    const file = path.join(dir, "cut.qcow2");
    await createImage(file, { format: "qcow2", size: 4 * MiB });

    for (let offset = 0; offset < 4 * MiB; offset += 64 * 1024) {
      await writeGuestData(file, offset, "z");
    }

    await truncate(file, 400 * 1024);

    await expect(checkImage(file, "qcow2")).rejects.toThrow(
      /is corrupt: \d+ corruptions, 0 check errors \(first: ERROR/,
    );
  });

  it("rejects a file too short to be qcow2", async () => {
    const file = path.join(dir, "short.qcow2");
    await writeFile(file, "QFI\xfb");

    await expect(checkImage(file, "qcow2")).rejects.toThrow("failed qemu-img check");
  });
});

describe("image operations", () => {
  it("converts raw to qcow2 keeping the data", async () => {
    const raw = path.join(dir, "disk.raw");
    const qcow2 = path.join(dir, "disk.qcow2");
    await createImage(raw, { format: "raw", size: MiB });
    const handle = await open(raw, "r+");
    await handle.write(Buffer.alloc(64 * 1024, "q"), 0, 64 * 1024, 0);
    await handle.close();

    await convertImage(raw, qcow2, { sourceFormat: "raw", targetFormat: "qcow2" });

    const info = await imageInfo(qcow2, { allowedDirs: [], format: "qcow2" });
    expect(info.virtualSize).toBe(MiB);
    await expectGuestData(qcow2, 0, "q");
  });

  it("refuses to overwrite an existing image", async () => {
    const file = path.join(dir, "exists.qcow2");
    await createImage(file, { format: "qcow2", size: MiB });

    await expect(createImage(file, { format: "qcow2", size: MiB })).rejects.toThrow(
      `image file ${file} already exists`,
    );
  });

  it("grows an image and shrinks only when asked", async () => {
    const file = path.join(dir, "grow.qcow2");
    await createImage(file, { format: "qcow2", size: MiB });

    await resizeImage(file, "qcow2", 8 * MiB);
    expect((await imageInfo(file, { allowedDirs: [] })).virtualSize).toBe(8 * MiB);

    await expect(resizeImage(file, "qcow2", 4 * MiB)).rejects.toThrow("--shrink");
    await resizeImage(file, "qcow2", 4 * MiB, { shrink: true });
    expect((await imageInfo(file, { allowedDirs: [] })).virtualSize).toBe(4 * MiB);
  });

  it("commits an overlay into its base", async () => {
    const base = path.join(dir, "base.qcow2");
    const top = path.join(dir, "top.qcow2");
    await createImage(base, { format: "qcow2", size: MiB });
    await createOverlay(base, top, { allowedDirs: [dir] });
    await writeGuestData(top, 0, "c");

    await commitImage(top);

    await expectGuestData(base, 0, "c");
  });

  it("rebases an overlay onto the base's parent keeping the data", async () => {
    const files = ["a", "b", "c"].map((name) => path.join(dir, `${name}.qcow2`));
    await createImage(files[0]!, { format: "qcow2", size: MiB });
    await writeGuestData(files[0]!, 0, "a");
    await createOverlay(files[0]!, files[1]!, { allowedDirs: [dir] });
    await writeGuestData(files[1]!, 65536, "b");
    await createOverlay(files[1]!, files[2]!, { allowedDirs: [dir] });

    await rebaseImage(files[2]!, { backingFile: files[0]!, backingFormat: "qcow2" });

    const info = await imageInfo(files[2]!, { allowedDirs: [dir] });
    expect(info.backingFile).toBe(files[0]);
    await expectGuestData(files[2]!, 0, "a");
    await expectGuestData(files[2]!, 65536, "b");
  });

  it("measures the space a conversion needs", async () => {
    const file = path.join(dir, "m.qcow2");
    await createImage(file, { format: "qcow2", size: 16 * MiB });

    const measured = await measureImage(file, "qcow2", "raw");

    expect(measured.required).toBe(16 * MiB);
    expect(measured.fullyAllocated).toBe(16 * MiB);
  });
});
