import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TstackClient } from "@tstack/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addLocalHost, startTestServer, type TestServer } from "./harness.js";

type Image = Record<string, unknown> & {
  uuid: string;
  status: string;
  format: string;
  size: number;
  md5Sum: string | null;
  sha256: string | null;
  lastError: string | null;
};

async function failure(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    return error as Error & { status?: number };
  }

  throw new Error("expected the call to fail");
}

describe("image upload to an image store", () => {
  let t: TestServer;
  let admin: TstackClient;
  let host: Awaited<ReturnType<typeof addLocalHost>>;
  let work: string;
  let storeUuid: string;

  /** Adds an upload:// image without waiting, then returns its job location and upload URL. */
  async function startUpload(name: string) {
    const imageUuid = randomBytes(16).toString("hex");
    const started = await admin.call<{ location: string }>("addImage", {
      params: {
        name,
        url: `upload://${name}.qcow2`,
        mediaType: "RootVolumeTemplate",
        backupStorageUuids: [storeUuid],
        resourceUuid: imageUuid,
      },
      noWait: true,
    });
    let uploadUrl: string | undefined;

    // The job creates the image row and opens the upload a moment after the 202.
    for (let attempt = 0; attempt < 100 && !uploadUrl; attempt++) {
      try {
        uploadUrl = (
          await admin.call<{ uploadUrl: string }>("getImageUploadUrl", {
            path: { uuid: imageUuid },
          })
        ).uploadUrl;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }

    expect(uploadUrl).toMatch(/\/uploads\/[0-9a-f]{32}\?expires=\d+&token=[0-9a-f]{64}$/);
    return { imageUuid, location: started.location, uploadUrl: uploadUrl! };
  }

  const image = async (uuid: string) =>
    (await admin.query<Image>("queryImage", [`uuid=${uuid}`])).inventories[0]!;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "tvol-upload-"));
    t = await startTestServer("sqlite");
    admin = t.admin;
    host = await addLocalHost(t);
    const store = await admin.call<{ inventory: { uuid: string } }>("addImageStoreBackupStorage", {
      params: { name: "store", url: join(work, "store"), hostname: "127.0.0.1" },
    });
    storeUuid = store.inventory.uuid;
    await admin.call("attachBackupStorageToZone", {
      path: { zoneUuid: host.zoneUuid, backupStorageUuid: storeUuid },
      params: {},
    });
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", join(work, "disk.qcow2"), "32M"]);
    // Data clusters make a cut-off copy detectably corrupt to qemu-img check.
    execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0xab 0 2M", join(work, "disk.qcow2")]);
  }, 120_000);

  afterAll(async () => {
    await host?.cleanup();
    await t?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("stores an uploaded qcow2", async () => {
    const bytes = readFileSync(join(work, "disk.qcow2"));
    const upload = await startUpload("uploaded");

    const response = await fetch(upload.uploadUrl, { method: "PUT", body: bytes });
    expect(response.status).toBe(200);

    const result = (await admin.waitForJob(upload.location)) as { inventory: Image };
    expect(result.inventory.status).toBe("Ready");
    expect(result.inventory.format).toBe("qcow2");
    expect(result.inventory.size).toBe(32 * 1024 * 1024);
    expect(result.inventory.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
    expect(result.inventory.md5Sum).toBe(createHash("md5").update(bytes).digest("hex"));
    const stored = join(work, "store", "images", upload.imageUuid, `${upload.imageUuid}.qcow2`);
    expect(existsSync(stored)).toBe(true);

    const late = await failure(
      admin.call("getImageUploadUrl", { path: { uuid: upload.imageUuid } }),
    );
    expect(late.status).toBe(409);
    expect(late.message).toMatch(/only an upload:\/\/ image in status Downloading/);

    const again = await fetch(upload.uploadUrl, { method: "PUT", body: bytes });
    expect(again.status).toBe(404);
  });

  it("rejects a truncated upload and keeps no file", async () => {
    const bytes = readFileSync(join(work, "disk.qcow2"));
    const upload = await startUpload("truncated");

    const response = await fetch(upload.uploadUrl, {
      method: "PUT",
      body: bytes.subarray(0, Math.floor(bytes.length / 2)),
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: string };
    expect(body.error).toMatch(/is corrupt/);

    const error = await failure(admin.waitForJob(upload.location));
    expect(error.message).toMatch(/failed to receive the upload of image/);
    expect((await image(upload.imageUuid)).status).toBe("Error");
    expect(existsSync(join(work, "store", "images", upload.imageUuid))).toBe(false);
  });

  it("rejects a forged grant, then cancels", async () => {
    const upload = await startUpload("forged");
    const forged = upload.uploadUrl.replace(/token=[0-9a-f]+/, `token=${"0".repeat(64)}`);

    const response = await fetch(forged, { method: "PUT", body: "x" });
    expect(response.status).toBe(403);

    // Cancelling the job ends the agent's wait, so the store takes no upload any more.
    expect(await admin.cancelJob(upload.location.split("/").pop()!)).toBe(true);
    const error = await failure(admin.waitForJob(upload.location));
    expect(error.message).toMatch(/cancel/i);
    expect((await image(upload.imageUuid)).status).toBe("Error");
    const closed = await fetch(upload.uploadUrl, { method: "PUT", body: "x" });
    expect(closed.status).toBe(404);
  });
});
