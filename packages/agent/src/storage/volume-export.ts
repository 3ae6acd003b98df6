import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import type { DownloadProgress } from "./download.js";
import { StorageError } from "./errors.js";
import { type VolumeRef, volumeDir, volumeFile } from "./primary.js";
import { convertImage, imageInfo } from "./qemu-img.js";

/** Options of `exportVolume`. */
export interface ExportVolumeOptions {
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
}

/** How long a PUT waits for the image store to expect the upload, which it learns at the same time. */
const NOT_EXPECTED_RETRIES = 40;
const RETRY_DELAY_MS = 250;

/**
 * Flattens a volume's backing chain into one qcow2 file beside it and PUTs that file to an image
 * store's upload URL, so the volume becomes an image. The VM must not write to the volume
 * meanwhile. The flattened file is removed whether the upload succeeds or not.
 */
export async function exportVolume(
  root: string,
  volume: VolumeRef,
  topFileUuid: string,
  uploadUrl: string,
  options: ExportVolumeOptions = {},
): Promise<{ size: number }> {
  const url = checkUploadUrl(uploadUrl);
  const source = volumeFile(root, volume, topFileUuid);

  // Reading the chain first checks that every backing file stays inside the storage.
  await imageInfo(source, { allowedDirs: [root], format: "qcow2" });
  const flattened = join(volumeDir(root, volume), `export-${randomUUID()}.qcow2`);

  try {
    await convertImage(source, flattened, {
      sourceFormat: "qcow2",
      targetFormat: "qcow2",
      signal: options.signal,
    });
    const { size } = await stat(flattened);
    await putWhenExpected(url, flattened, size, options);
    return { size };
  } finally {
    await rm(flattened, { force: true });
  }
}

function checkUploadUrl(value: string) {
  const url = URL.canParse(value) ? new URL(value) : undefined;

  if (url?.protocol !== "http:") {
    throw new StorageError(
      "INVALID_ARGUMENT",
      `invalid uploadUrl ${JSON.stringify(value)}: expected the http URL of an image store upload`,
    );
  }

  return url;
}

async function putWhenExpected(url: URL, file: string, size: number, options: ExportVolumeOptions) {
  for (let attempt = 1; ; attempt++) {
    const reply = await put(url, file, size, options);

    if (reply.status >= 200 && reply.status < 300) {
      return;
    }

    if (reply.status !== 404 || attempt >= NOT_EXPECTED_RETRIES) {
      throw new StorageError(
        "UPLOAD_FAILED",
        `the image store rejected the upload with HTTP ${reply.status}: ${reply.body.slice(0, 300)}`,
      );
    }

    await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
  }
}

function put(url: URL, file: string, size: number, options: ExportVolumeOptions) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const outgoing = request(url, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream", "content-length": String(size) },
      signal: options.signal,
    });
    outgoing.on("response", (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk) => {
        body += chunk;
      });
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    });
    outgoing.on("error", (error) =>
      reject(
        new StorageError("UPLOAD_FAILED", `upload to the image store failed: ${error.message}`),
      ),
    );

    let sent = 0;
    const source = createReadStream(file);
    source.on("data", (chunk) => {
      sent += chunk.length;
      options.onProgress?.({ bytesDone: sent, totalBytes: size });
    });
    source.on("error", (error) => outgoing.destroy(error));
    source.pipe(outgoing);
  });
}
