import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { storageCommandHandlers } from "./commands.js";
import { makeTempDir } from "./test-helpers.js";

const MiB = 1024 * 1024;
const ACCOUNT = "a".repeat(32);
const VOLUME = "b".repeat(32);
const IMAGE = "c".repeat(32);

let scratch: { dir: string; cleanup: () => Promise<void> };

beforeEach(async () => {
  scratch = await makeTempDir("commands");
});

afterEach(async () => {
  await scratch.cleanup();
});

describe("storage command handlers", () => {
  it("runs a data volume's life cycle", async () => {
    const handlers = storageCommandHandlers({});
    const root = path.join(scratch.dir, "primary");
    const volume = { type: "Data" as const, accountUuid: ACCOUNT, volumeUuid: VOLUME };

    const capacity = await handlers["/storage/primary/init"]({ root }, {});
    const created = await handlers["/storage/volume/data/create"](
      { root, accountUuid: ACCOUNT, volumeUuid: VOLUME, size: 4 * MiB },
      {},
    );
    const listed = await handlers["/storage/volume/files"]({ root, volume }, {});
    await handlers["/storage/volume/delete"]({ root, volume }, {});
    const after = await handlers["/storage/volume/files"]({ root, volume }, {});

    expect(capacity.totalPhysicalCapacity).toBeGreaterThan(0);
    expect(created.virtualSize).toBe(4 * MiB);
    expect(listed.files.map((file) => file.fileUuid)).toEqual([VOLUME]);
    expect(after.files).toEqual([]);
  });

  it("takes file URL prefixes from the agent policy only", async () => {
    const source = path.join(scratch.dir, "disk.raw");
    await writeFile(source, randomBytes(MiB));
    const root = path.join(scratch.dir, "store");
    const body = { root, imageUuid: IMAGE, url: pathToFileURL(source).href };

    const denied = storageCommandHandlers({})["/imagestore/download"](body, {});
    await expect(denied).rejects.toThrow("is not under an allowed directory");

    const allowed = storageCommandHandlers({ allowedFilePrefixes: [scratch.dir] });
    await allowed["/imagestore/init"]({ root }, {});
    const image = await allowed["/imagestore/download"](body, {});
    expect(image.format).toBe("raw");
  });

  it("rejects a relative or unnormalized root", async () => {
    const handlers = storageCommandHandlers({});

    for (const root of ["relative/dir", "/srv/../etc", "/"]) {
      await expect(handlers["/storage/primary/capacity"]({ root }, {}), root).rejects.toThrow(
        "invalid storage root",
      );
    }
  });
});
